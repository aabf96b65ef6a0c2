"""Atomic replacement of the output directory: the old OUT stays whole until the new one is complete."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from k8sseed.errors import OutputError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
MARKER = "manifest.json"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _flush_to_disk(root: Path) -> None:
    """Everything written under root reaches the disk before the swap: one syncfs, not a fsync per file."""
    fd = os.open(root, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _remove_leftovers(out: Path) -> None:
    for stale in out.parent.glob(f".{out.name}.k8sseed-*"):
        shutil.rmtree(stale, ignore_errors=True)


def check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputError(f"{out} is not empty and holds no {MARKER}: it is not a k8sseed output, "
                          "so k8sseed will not replace it; choose another -o directory")


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside OUT; on success it becomes OUT, on any failure OUT is untouched."""
    out = out.absolute()
    check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.k8sseed-new-", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write beside {out}: {exc.strerror}") from exc
    try:
        os.chmod(tmp, 0o700)
        yield tmp
        _flush_to_disk(tmp)
        if out.exists():
            if not _exchange(tmp, out):
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.k8sseed-old-", dir=out.parent))
                os.rename(out, old / "out")
                os.rename(tmp, out)
                tmp = old
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous OUT
        else:
            os.rename(tmp, out)
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
