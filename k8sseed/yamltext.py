"""YAML text from data: PyYAML's C dumper, literal blocks for multi-line strings, stable order."""

from __future__ import annotations

from typing import Any

import yaml

_Base: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar(_STR, value, style="|")
    return dumper.represent_scalar(_STR, value)


class _Dumper(_Base):  # type: ignore[misc, valid-type]
    """SafeDumper's output, with a direct representer for the plain types we emit: the generic one (alias
    bookkeeping, per-type dispatch) was the largest cost of a build. Anything else takes the generic path."""

    def represent_data(self, data: Any) -> yaml.Node:
        kind = type(data)
        if kind is str:
            if "\n" in data:
                return yaml.ScalarNode(_STR, data, style="|")
            return yaml.ScalarNode(_STR, data)
        if kind is dict:
            return yaml.MappingNode(_MAP, [(self.represent_data(k), self.represent_data(v)) for k, v in data.items()],
                                    flow_style=False)
        if kind is list:
            return yaml.SequenceNode(_SEQ, [self.represent_data(item) for item in data], flow_style=False)
        if kind is bool:
            return yaml.ScalarNode("tag:yaml.org,2002:bool", "true" if data else "false")
        if kind is int:
            return yaml.ScalarNode("tag:yaml.org,2002:int", str(data))
        return super().represent_data(data)


_Dumper.add_representer(str, _str)

_OPTIONS: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "default_flow_style": False,
                            "allow_unicode": True, "width": 1_000_000}


def dump(data: Any) -> str:
    return yaml.dump(data, **_OPTIONS)


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, explicit_start=True, **_OPTIONS)
