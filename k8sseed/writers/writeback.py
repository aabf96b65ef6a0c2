"""Start writing a file's data to the disk now, without waiting for it.

A build ends with one syncfs before OUT is swapped in (writers/output_dir.py): the seeds must be on the disk
before they replace the previous ones. Left alone, the kernel holds the whole output in the page cache and that
syncfs then waits for all of it at once; asking for writeback as each file is closed lets the disk work while
the build renders the next nodes, so the final syncfs finds little left to do. Linux only
(sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start, do not wait); elsewhere a no-op, and durability still
comes from the syncfs.
"""

from __future__ import annotations

import ctypes
import sys

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    call = getattr(libc, "sync_file_range", None)
    if call is not None:
        call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        call.restype = ctypes.c_int
    return call


_SYNC_FILE_RANGE = _load()


def start_writeback(fd: int) -> None:
    """Queue fd's dirty pages for writing (best effort: a refusal leaves them to the final syncfs)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
