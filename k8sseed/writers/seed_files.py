"""Write one node's seed: OUT/<node>.iso and the same bytes as OUT/<node>/{user-data,...}."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from k8sseed.seed import NodeSeed
from k8sseed.writers.iso import iso_bytes
from k8sseed.writers.writeback import start_writeback

_BLOCK = 4096  # a file system block: a leading run of zero blocks is left as a hole
_WRITEBACK_FROM = 16384  # smaller files (meta-data, network-config) are left to the final syncfs


_ZERO_BLOCK = bytes(_BLOCK)


def _zero_prefix(view: memoryview) -> int:
    """How many leading bytes are whole zero blocks (an ISO's 32 KiB system area): not written, the file reads
    them back as zeros from a hole. Never the whole file: the block holding its last byte is always written."""
    offset = 0
    while offset + _BLOCK < len(view) and view[offset:offset + _BLOCK] == _ZERO_BLOCK:
        offset += _BLOCK
    return offset


def _write(path: Path, data: bytes, epoch: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        offset = _zero_prefix(view)
        view = view[offset:]
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        if len(data) >= _WRITEBACK_FROM:
            start_writeback(fd)
        os.utime(fd, (epoch, epoch))
    finally:
        os.close(fd)


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
    """What the manifest needs of a written seed: names and digests, no contents. `file_sha256` has one entry
    per seed file (user-data..., and "ignition" for OUT/<node>.ign); an Ignition-only build writes no ISO."""

    name: str
    iso_name: str | None
    iso_sha256: str | None
    file_sha256: dict[str, str]
    size: int
    ignition_name: str | None = None

    @property
    def paths(self) -> list[str]:
        """What was written, relative to OUT."""
        paths = [self.iso_name, *(f"{self.name}/{f}" for f in self.file_sha256 if f != "ignition")]
        return [p for p in (*paths, self.ignition_name) if p]


def write_ignition(name: str, data: bytes, out: Path, epoch: int, seed: WrittenSeed | None) -> WrittenSeed:
    """OUT/<node>.ign, added to what the node's NoCloud seed wrote (if any)."""
    _write(out / f"{name}.ign", data, epoch)
    sha = hashlib.sha256(data).hexdigest()
    if seed is None:
        return WrittenSeed(name, None, None, {"ignition": sha}, len(data), f"{name}.ign")
    return WrittenSeed(name, seed.iso_name, seed.iso_sha256, {**seed.file_sha256, "ignition": sha},
                       seed.size + len(data), f"{name}.ign")


def write_packed_seed(packed: PackedSeed, out: Path, epoch: int) -> WrittenSeed:
    folder = out / packed.seed.name
    folder.mkdir(mode=0o700)
    for name, data in packed.seed.files():
        _write(folder / name, data, epoch)
    _write(out / packed.iso_name, packed.iso, epoch)
    os.utime(folder, (epoch, epoch))
    return WrittenSeed(packed.seed.name, packed.iso_name, packed.iso_sha256, packed.file_sha256, packed.size)
