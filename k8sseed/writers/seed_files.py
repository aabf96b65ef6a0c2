"""Write one node's seed: OUT/<node>.iso and the same bytes as OUT/<node>/{user-data,...}."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from k8sseed.seed import NodeSeed
from k8sseed.writers.iso import iso_bytes


def _write(path: Path, data: bytes, epoch: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.utime(path, (epoch, epoch))


def write_router_files(files: dict[str, str], out: Path, epoch: int) -> int:
    """OUT/router/: the top-of-rack side of the BGP sessions (they hold the MD5 keys: 0600 like the seeds)."""
    if not files:
        return 0
    folder = out / "router"
    folder.mkdir(mode=0o700)
    written = 0
    for name, text in sorted(files.items()):
        data = text.encode("utf-8")
        _write(folder / name, data, epoch)
        written += len(data)
    os.utime(folder, (epoch, epoch))
    return written


def write_seed(seed: NodeSeed, out: Path, epoch: int) -> tuple[str, str, int]:
    """Returns (iso file name, iso sha256, bytes written)."""
    folder = out / seed.name
    folder.mkdir(mode=0o700)
    written = 0
    for name, data in seed.files():
        _write(folder / name, data, epoch)
        written += len(data)
    iso = iso_bytes(seed.files(), epoch)
    _write(out / f"{seed.name}.iso", iso, epoch)
    os.utime(folder, (epoch, epoch))
    return f"{seed.name}.iso", hashlib.sha256(iso).hexdigest(), written + len(iso)
