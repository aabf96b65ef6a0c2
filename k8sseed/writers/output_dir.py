"""Atomic replacement of the output directory: the old OUT stays whole until the new one is complete."""

from __future__ import annotations

import contextlib
import ctypes
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
    libc = ctypes.CDLL(None, use_errno=True)
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
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


# File systems the kernel fills: nothing can be created in them, whatever the permissions say.
_KERNEL_FILE_SYSTEMS = frozenset({"proc", "sysfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
                                  "configfs", "pstore", "bpf", "efivarfs", "fusectl", "hugetlbfs", "mqueue"})


def _file_system_type(path: Path) -> str | None:
    """The type of the file system path is on, from /proc/self/mounts (None where that cannot be read)."""
    real = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def why_not_writable(out: Path, exc: OSError) -> str:
    """Why OUT cannot be created or written beside, naming the real cause rather than the bare errno."""
    where = next((a for a in (out.parent, *out.parent.parents) if a.exists()), out.parent)
    kind = _file_system_type(where)
    if kind in _KERNEL_FILE_SYSTEMS:
        return (f"cannot create {out}: {where} is on a {kind} file system, which the kernel fills and where no "
                "files can be created; choose another -o directory")
    if exc.errno == errno.EROFS:
        return f"cannot create {out}: {where} is on a read-only file system; choose another -o directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot create {out}: you may not create files in {where} (permission denied); choose another "
                "-o directory, or one you own")
    if exc.errno == errno.ENOSPC:
        return f"cannot create {out}: no space left on the device that holds {where}"
    return f"cannot create {out} in {where}: {exc.strerror or exc}"


def _remove_leftovers(out: Path) -> None:
    for stale in out.parent.glob(f".{out.name}.k8sseed-*"):
        shutil.rmtree(stale, ignore_errors=True)


def resolve_out(out: Path) -> Path:
    """The directory a build replaces: OUT itself, or where OUT links to (the link stays and keeps pointing there)."""
    if not out.is_symlink():
        return out.absolute()
    target = Path(os.path.realpath(out))
    if not target.exists():
        raise OutputError(f"{out} is a symbolic link to {target}, which does not exist; "
                          f"create that directory (mkdir -p {target}) or remove the link, then build again")
    if not target.is_dir():
        raise OutputError(f"{out} is a symbolic link to {target}, which is not a directory; "
                          "choose another -o directory")
    return target


def _shown(out: Path, shown_as: Path | None) -> str:
    if shown_as is None:
        return str(out)
    return str(shown_as) if shown_as.absolute() == out else f"{shown_as} (a link to {out})"


def check_replaceable(out: Path, shown_as: Path | None = None) -> None:
    """OUT may be replaced: it does not exist, is empty, or holds a manifest.json (a k8sseed output)."""
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{out} is a symbolic link to {os.readlink(out)}, which does not exist; "
                          "create that directory or remove the link, then build again")
    blocker = next((a for a in out.parents if a.exists() or a.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"{blocker} is not a directory, so {_shown(out, shown_as)} cannot be created there; "
                          "choose another -o directory")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{_shown(out, shown_as)} exists and is not a directory; choose another -o directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputError(f"{_shown(out, shown_as)} is not empty and holds no {MARKER}: it is not a k8sseed output, "
                          "so k8sseed will not replace it; choose another -o directory")


def unexpected_entries(out: Path, expected: set[str]) -> list[str]:
    """Paths under OUT (relative, directories with a trailing '/') that are not in `expected` nor inside one."""
    found: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(folder.iterdir()):
            rel = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                if rel + "/" in expected:
                    walk(entry, rel + "/")
                else:
                    found.append(rel + "/")
            elif rel not in expected or entry.is_symlink():
                found.append(rel)

    if out.is_dir():
        walk(out, "")
    return found


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside OUT; on success it becomes OUT, on any failure OUT is untouched.

    OUT must be a real directory or a path that does not exist yet (resolve_out turns a link into its target):
    swapping a symbolic link would replace the link, not what it points to.
    """
    out = out.absolute()
    check_replaceable(out)
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link: resolve it first")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.k8sseed-new-", dir=out.parent))
    except OSError as exc:
        raise OutputError(why_not_writable(out, exc)) from exc
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
