"""HTTP Range requests (RFC 9110 §14) for the ISOs: BMC virtual media reads them in ranges."""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """The range lies outside the file: 416 with Content-Range: bytes */size."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single range, or None to send the whole file.

    Several ranges, or a header we do not understand, get the whole file (a server may ignore Range)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0:
            raise Unsatisfiable(header)
        start = max(0, size - count)
        return start, size - start
    start = int(first)
    if start >= size:
        raise Unsatisfiable(header)
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None  # invalid: ignored, whole file
    return start, end - start + 1
