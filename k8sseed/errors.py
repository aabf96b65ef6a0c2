"""Error types, one per layer; the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One problem in a profile, located by JSON path and source position."""

    path: str
    message: str
    line: int = 0
    column: int = 0

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}:{self.column}" if self.line else filename
        line = f"{where}: {self.path or '(top)'}: {self.message}"
        # One finding, one line: no control character of a profile may break the output.
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


class ProfileError(Exception):
    """The profile is invalid; carries every finding of one validation run."""

    def __init__(self, filename: str, findings: list[Finding]):
        self.filename = filename
        self.findings = sorted(findings, key=lambda f: (f.line, f.column, f.path))
        super().__init__("\n".join(f.render(filename) for f in self.findings))


class SecretError(Exception):
    """The cluster secret file is missing, malformed or unsafe."""


class OutputError(Exception):
    """The output directory cannot be written."""
