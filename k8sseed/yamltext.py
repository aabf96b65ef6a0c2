"""YAML text from data: PyYAML's C dumper, literal blocks for multi-line strings, stable order."""

from __future__ import annotations

import marshal
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

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        """The emitter asks, twice per scalar, which tag the plain text would read back as: a pure function of
        the text, answered from a bounded memo (keys, paths, owners and modes repeat on every node)."""
        if kind is not yaml.ScalarNode or len(value) > 256:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            if len(_RESOLVED) >= 8192:
                _RESOLVED.clear()
            tag = _RESOLVED[key] = super().resolve(kind, value, implicit)
        return tag


_RESOLVED: dict[tuple[str, Any], str] = {}


_Dumper.add_representer(str, _str)

_OPTIONS: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "default_flow_style": False,
                            "allow_unicode": True, "width": 1_000_000}


def dump(data: Any) -> str:
    return yaml.dump(data, **_OPTIONS)


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, explicit_start=True, **_OPTIONS)


_DUMPED: dict[bytes, str] = {}


def dump_memoised(data: Any) -> str:
    """dump(data), remembered for values that repeat from node to node (users, NTP, runcmd of a role).

    The key is the value's marshal encoding: it keeps types apart (True and 1, 'a' and a tuple, int and str
    keys) and the order of mappings, which the YAML follows. Values marshal cannot encode are dumped as usual.
    """
    try:
        key = marshal.dumps(data)
    except ValueError:
        return dump(data)
    text = _DUMPED.get(key)
    if text is None:
        if len(_DUMPED) >= 1024:
            _DUMPED.clear()
        text = _DUMPED[key] = dump(data)
    return text


def dump_mapping(data: dict[str, Any]) -> str:
    """dump(data) for a block mapping, one top-level key at a time: the keys whose value is the same on every
    node are dumped once per build. Byte for byte dump(data): top-level entries of a block mapping are
    independent text."""
    return "".join(dump_memoised({key: value}) for key, value in data.items())


def dump_documents(documents: list[Any]) -> str:
    """dump_all(documents), byte for byte, with each non-empty mapping dumped through dump_mapping."""
    if not all(type(doc) is dict and doc for doc in documents):
        return dump_all(documents)
    return "".join("---\n" + dump_mapping(doc) for doc in documents)
