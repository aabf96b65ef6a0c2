"""YAML parsing that remembers where every value stood (line, column) by JSON path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from k8sseed.errors import Finding

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Source:
    """Parsed profile data plus the source position of every mapping key and value."""

    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def where(self, path: Path) -> tuple[int, int]:
        """Position of path, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:cut]))
            if pos:
                return pos
        return (1, 1)

    def finding(self, path: Path, message: str) -> Finding:
        line, column = self.where(path)
        return Finding(format_path(path), message, line, column)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _construct(loader: Any, node: yaml.Node, path: Path, src: Source) -> Any:
    src.positions.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                message = "YAML merge keys ('<<') are not supported: write the keys out"
                src.findings.append(Finding(format_path(path), message, *_mark(key_node)))
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                src.findings.append(Finding(format_path(path), f"key {key!r} must be a string", *_mark(key_node)))
                continue
            if key in result:
                src.findings.append(Finding(format_path((*path, key)),
                                            f"duplicate key '{key}': the second value would silently win; keep one",
                                            *_mark(key_node)))
                continue
            src.positions[(*path, key)] = _mark(value_node)
            result[key] = _construct(loader, value_node, (*path, key), src)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*path, i), src) for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, (bytes, bytearray)) or type(value).__module__ == "datetime":
        # !!binary and unquoted dates are never what a profile means: keep the text.
        value = node.value
    return value


def parse_yaml(text: str) -> Source:
    """Parse one YAML document; syntax errors become findings, never exceptions."""
    src = Source(data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            src.findings.append(Finding("", "the profile is empty: start from 'k8sseed init'", 1, 1))
            return src
        src.data = _construct(loader, node, (), src)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        src.findings.append(Finding("", f"YAML syntax error: {problem}", line, column))
    except yaml.YAMLError as exc:
        src.findings.append(Finding("", f"YAML error: {exc}", 1, 1))
    finally:
        loader.dispose()
    return src
