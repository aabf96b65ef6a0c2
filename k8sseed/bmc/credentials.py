"""BMC credentials: from REDFISH_USERNAME / REDFISH_PASSWORD or a private file, never from the command line."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from k8sseed.bmc.errors import BmcError

USERNAME_VARIABLE = "REDFISH_USERNAME"
PASSWORD_VARIABLE = "REDFISH_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def credentials_from_environment(environ: Mapping[str, str]) -> Credentials:
    username, password = environ.get(USERNAME_VARIABLE), environ.get(PASSWORD_VARIABLE)
    if not username or password is None:
        raise BmcError(f"no BMC credentials: set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} in the environment, "
                       "or pass --credentials FILE (a 0600 file with those two lines, NAME=value)")
    return Credentials(username, password)


def credentials_from_file(path: Path) -> Credentials:
    """A file of NAME=value lines (the two variables' names), as `source`-able by a shell; mode 0600 or stricter."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BmcError(f"{path}: cannot read the BMC credentials: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise BmcError(f"{path}: the BMC credentials must be a regular file")
    if info.st_mode & 0o077:
        raise BmcError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the BMC password; "
                       f"run 'chmod 600 {path}'")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BmcError(f"{path}: cannot read the BMC credentials: {getattr(exc, 'strerror', None) or exc}") from exc
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep or name.strip() not in (USERNAME_VARIABLE, PASSWORD_VARIABLE):
            raise BmcError(f"{path}:{number}: expected {USERNAME_VARIABLE}=... or {PASSWORD_VARIABLE}=... "
                           "(one NAME=value per line)")
        values[name.strip()] = _unquote(value.strip())
    if USERNAME_VARIABLE not in values or PASSWORD_VARIABLE not in values:
        raise BmcError(f"{path}: needs both {USERNAME_VARIABLE}=... and {PASSWORD_VARIABLE}=... lines")
    return credentials_from_environment(values)


def find_credentials(path: Path | None, environ: Mapping[str, str] | None = None) -> Credentials:
    """The file if one is given, else the environment."""
    return credentials_from_file(path) if path is not None else credentials_from_environment(
        os.environ if environ is None else environ)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
