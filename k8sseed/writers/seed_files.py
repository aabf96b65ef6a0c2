"""Write one node's seed: OUT/<node>.iso and the same bytes as OUT/<node>/{user-data,...}."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PackedSeed:
    """A node's seed with its ISO image and digests: everything to write, nothing written yet."""

    seed: NodeSeed
    iso: bytes
    iso_sha256: str
    file_sha256: dict[str, str]

    @property
    def iso_name(self) -> str:
        return f"{self.seed.name}.iso"

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.seed.files()) + len(self.iso)


def pack_seed(seed: NodeSeed, epoch: int) -> PackedSeed:
    iso = iso_bytes(seed.files(), epoch)
    return PackedSeed(seed, iso, hashlib.sha256(iso).hexdigest(),
                      {name: hashlib.sha256(data).hexdigest() for name, data in seed.files()})


@dataclass(frozen=True)
class WrittenSeed:
    """What the manifest needs of a written seed: names and digests, no contents."""

    name: str
    iso_name: str
    iso_sha256: str
    file_sha256: dict[str, str]
    size: int


def write_packed_seed(packed: PackedSeed, out: Path, epoch: int) -> WrittenSeed:
    folder = out / packed.seed.name
    folder.mkdir(mode=0o700)
    for name, data in packed.seed.files():
        _write(folder / name, data, epoch)
    _write(out / packed.iso_name, packed.iso, epoch)
    os.utime(folder, (epoch, epoch))
    return WrittenSeed(packed.seed.name, packed.iso_name, packed.iso_sha256, packed.file_sha256, packed.size)
