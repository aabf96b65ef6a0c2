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

# A profile is a few hundred values per node; far more means alias expansion run wild.
MAX_VALUES = 500_000


def printable(text: str) -> str:
    """One line, control characters shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{printable(part)}" if out else printable(part)
    return out


def line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    newline = "\n" if isinstance(text, str) else b"\n"
    before = text[:offset]
    return before.count(newline) + 1, offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]


@dataclass
class Source:
    """Parsed profile data plus the source position of every mapping key and value."""

    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scalar_text: dict[Path, str] = field(default_factory=dict)  # what the user wrote, for non-string scalars
    findings: list[Finding] = field(default_factory=list)

    def where(self, path: Path) -> tuple[int, int]:
        """Position of path, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:cut]))
            if pos:
                return pos
        return (1, 1)

    def finding(self, path: Path, message: str, at_key: bool = False) -> Finding:
        """A finding at the value of path (or at its key, for problems with the key itself)."""
        line, column = (self.key_positions.get(path) or self.where(path)) if at_key else self.where(path)
        return Finding(format_path(path), message, line, column)


class _TooLarge(Exception):
    pass


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, loader: Any, src: Source):
        self.loader = loader
        self.src = src
        self.count = 0
        self.active: set[int] = set()

    def scalar(self, node: yaml.Node, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError):
            self.src.findings.append(Finding(format_path(path), f"'{printable(node.value)}' cannot be read as "
                                             f"{node.tag.rsplit(':', 1)[-1]}: remove the tag or fix the value",
                                             *_mark(node)))
            return None
        if isinstance(value, (bytes, bytearray)) or type(value).__module__ == "datetime":
            # !!binary and unquoted dates are never what a profile means: keep the text.
            return node.value
        if not isinstance(value, str) and value is not None:
            self.src.scalar_text[path] = node.value
        return value

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooLarge
        self.src.positions.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            self.src.findings.append(Finding(format_path(path), "this alias refers to itself: write the value out",
                                             *_mark(node)))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                message = "YAML merge keys ('<<') are not supported: write the keys out"
                self.src.findings.append(Finding(format_path(path), message, *_mark(key_node)))
                continue
            key = self.scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                shown = printable(str(getattr(key_node, "value", "?")))
                self.src.findings.append(Finding(format_path(path), f"key '{shown}' must be a string: quote it",
                                                 *_mark(key_node)))
                continue
            if key in result:
                self.src.findings.append(Finding(format_path((*path, key)),
                                                 f"duplicate key '{printable(key)}': the second value would "
                                                 "silently win; keep one", *_mark(key_node)))
                continue
            self.src.positions[(*path, key)] = _mark(value_node)
            self.src.key_positions[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result


def _tab_at(text: str, line: int, column: int) -> int | None:
    """The 0-based column of the tab the parser stopped at (or of one in that line's indentation), else None."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return None
    here = lines[line]
    if column < len(here) and here[column] == "\t":
        return column
    indent = here[:len(here) - len(here.lstrip(" \t"))]
    return indent.index("\t") if "\t" in indent else None


def _syntax_message(exc: yaml.MarkedYAMLError, tab: bool = False) -> str:
    if tab:
        return ("a tab character here: YAML indents with spaces only, and a tab cannot start a value; replace it "
                "with spaces")
    problem = exc.problem or "invalid YAML"
    if "\t" in problem or "'\\t'" in problem or "tab" in problem:
        problem += " (indent with spaces, not tabs)"
    context = f"{exc.context}, " if exc.context else ""
    return printable(f"YAML syntax error: {context}{problem}")


def parse_yaml(text: str) -> Source:
    """Parse one YAML document; syntax errors become findings, never exceptions."""
    src = Source(data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            src.findings.append(Finding("", "the profile is empty: start from 'k8sseed init'", 1, 1))
            return src
        src.data = _Builder(loader, src).build(node, ())
    except _TooLarge:
        src.findings.append(Finding("", f"the profile expands to more than {MAX_VALUES} values (YAML aliases?): "
                                    "write it out plainly", 1, 1))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        tab = _tab_at(text, line - 1, column - 1) if mark else None
        if tab is not None:
            column = tab + 1
        src.findings.append(Finding("", _syntax_message(exc, tab is not None), line, column))
    except yaml.reader.ReaderError as exc:
        line, column = line_col(text, exc.position)
        src.findings.append(Finding("", f"character {exc.character!r} is not allowed in YAML: remove it",
                                    line, column))
    except yaml.YAMLError as exc:
        src.findings.append(Finding("", printable(f"YAML error: {exc}"), 1, 1))
    finally:
        loader.dispose()
    return src
