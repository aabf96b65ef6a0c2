"""YAML text from data: PyYAML's C dumper, literal blocks for multi-line strings, stable order."""

from __future__ import annotations

from typing import Any

import yaml

_Base: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[misc, valid-type]
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)

_OPTIONS: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "default_flow_style": False,
                            "allow_unicode": True, "width": 1_000_000}


def dump(data: Any) -> str:
    return yaml.dump(data, **_OPTIONS)


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, explicit_start=True, **_OPTIONS)
