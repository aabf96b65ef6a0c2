"""The seed ISO writer: byte for byte what pycdlib writes for the same files, readable by the kernel's tools."""

from __future__ import annotations

import contextlib
import io
import random
import subprocess
import time
from collections.abc import Iterator

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.pycdlib
import pycdlib.utils
import pytest
from conftest import require_tool

from k8sseed.writers.iso import SECTOR, iso_bytes, read_iso

_PYCDLIB_MODULES = (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib, pycdlib.utils)
EPOCH = 1767225600  # 2026-01-01


class _FixedClock:
    def __init__(self, epoch: int):
        self._epoch = float(epoch)
        self.gmtime = time.gmtime
        self.localtime = time.gmtime
        self.strftime = time.strftime

    def time(self) -> float:
        return self._epoch


@contextlib.contextmanager
def _pycdlib_clock(epoch: int) -> Iterator[None]:
    saved = [m.time for m in _PYCDLIB_MODULES]
    for module in _PYCDLIB_MODULES:
        module.time = _FixedClock(epoch)  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, original in zip(_PYCDLIB_MODULES, saved, strict=True):
            module.time = original


def pycdlib_iso(files: tuple[tuple[str, bytes], ...], epoch: int) -> bytes:
    """The reference: pycdlib (the writer k8sseed used before its own) with the same options."""
    with _pycdlib_clock(epoch):
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata", sys_ident="LINUX",
                app_ident_str="K8SSEED")
        for name, content in files:
            iso.add_fp(io.BytesIO(content), len(content), f"/{name.upper().replace('-', '_')}.;1", rr_name=name,
                       joliet_path=f"/{name}", file_mode=0o100600)
        out = io.BytesIO()
        iso.write_fp(out)
        iso.close()
    return out.getvalue()


def _seed(user: int, meta: int, network: int, rng: random.Random) -> tuple[tuple[str, bytes], ...]:
    return (("user-data", rng.randbytes(user)), ("meta-data", rng.randbytes(meta)),
            ("network-config", rng.randbytes(network)))


SIZES = [(74503, 64, 274), (1, 1, 1), (SECTOR, SECTOR, SECTOR), (SECTOR + 1, 2 * SECTOR - 1, 2 * SECTOR),
         (0, 5, 7), (300_000, 3, 100_000)]


@pytest.mark.parametrize("sizes", SIZES, ids=[f"{u}-{m}-{n}" for u, m, n in SIZES])
@pytest.mark.parametrize("epoch", [EPOCH, EPOCH + 3723, 1_700_000_000, 0])
def test_iso_is_byte_identical_to_pycdlib(sizes, epoch):
    files = _seed(*sizes, random.Random(sum(sizes) + epoch))
    assert iso_bytes(files, epoch) == pycdlib_iso(files, epoch)


def test_random_sizes_and_orders_match_pycdlib():
    rng = random.Random(7)
    for _ in range(40):
        files = list(_seed(rng.randrange(0, 20_000), rng.randrange(0, 3000), rng.randrange(0, 5000), rng))
        rng.shuffle(files)
        assert iso_bytes(tuple(files), EPOCH) == pycdlib_iso(tuple(files), EPOCH)


def test_iso_reads_back_with_pycdlib_isoinfo_and_xorriso(tmp_path):
    isoinfo, xorriso = require_tool("isoinfo"), require_tool("xorriso")
    files = _seed(9000, 70, 300, random.Random(1))
    data = iso_bytes(files, EPOCH)
    assert read_iso(data) == ("cidata", dict(files))
    path = tmp_path / "seed.iso"
    path.write_bytes(data)
    info = subprocess.run([isoinfo, "-d", "-i", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: cidata" in info and "Rock Ridge signatures version 1 found" in info
    listing = subprocess.run([isoinfo, "-l", "-R", "-i", str(path)], capture_output=True, text=True,
                             check=True).stdout
    assert listing.count("-rw-------") == 3
    extract = tmp_path / "x"
    subprocess.run([xorriso, "-osirrox", "on", "-indev", str(path), "-extract", "/", str(extract)],
                   capture_output=True, check=True)
    for name, content in files:
        assert (extract / name).read_bytes() == content


def test_too_many_files_for_the_root_sector_are_refused():
    files = tuple((f"file-{i:03d}", b"x") for i in range(40))
    with pytest.raises(ValueError, match="root directory"):
        iso_bytes(files, EPOCH)
