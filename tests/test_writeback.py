"""Seeds are handed to the disk as they are written (so the final syncfs before OUT is swapped in has little
left to wait for), and asking for that never fails a build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from k8sseed.writers import seed_files, writeback


def test_written_seed_files_are_queued_for_writeback(monkeypatch, tmp_path: Path):
    queued: list[int] = []
    monkeypatch.setattr(seed_files, "start_writeback", lambda fd: queued.append(os.fstat(fd).st_ino))
    target = tmp_path / "user-data"
    seed_files._write(target, b"#cloud-config\n" * 2000, 1_700_000_000)
    assert queued == [target.stat().st_ino]
    assert target.read_bytes() == b"#cloud-config\n" * 2000
    assert target.stat().st_mtime == 1_700_000_000 and target.stat().st_mode & 0o777 == 0o600


def test_writeback_is_best_effort_on_anything_that_cannot_do_it(tmp_path: Path):
    read_end, write_end = os.pipe()  # sync_file_range on a pipe fails with ESPIPE: ignored
    try:
        writeback.start_writeback(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 70000)
        writeback.start_writeback(fd)
    finally:
        os.close(fd)
    assert (tmp_path / "file").read_bytes() == b"x" * 70000


def test_on_linux_the_kernel_call_is_found():
    assert writeback._SYNC_FILE_RANGE is not None


def test_small_files_are_left_to_the_final_syncfs(monkeypatch, tmp_path: Path):
    queued: list[int] = []
    monkeypatch.setattr(seed_files, "start_writeback", lambda fd: queued.append(fd))
    seed_files._write(tmp_path / "meta-data", b"instance-id: x\n", 1_700_000_000)
    assert queued == [] and (tmp_path / "meta-data").read_bytes() == b"instance-id: x\n"


def test_an_isos_zero_system_area_is_a_hole_that_reads_back_as_zeros(tmp_path: Path):
    from k8sseed.writers.iso import iso_bytes

    iso = iso_bytes((("user-data", b"#cloud-config\n" * 3000), ("meta-data", b"instance-id: x\n")), 1_700_000_000)
    assert iso[:32768] == bytes(32768)
    target = tmp_path / "node.iso"
    seed_files._write(target, iso, 1_700_000_000)
    assert target.read_bytes() == iso
    assert target.stat().st_size == len(iso) and target.stat().st_mtime == 1_700_000_000
    assert target.stat().st_blocks * 512 < len(iso) - 32768 + 4096  # the 16 zero sectors take no disk blocks


@pytest.mark.parametrize("data", [bytes(10000), bytes(8192), b"\0" * 4095 + b"x", bytes(4096) + b"x" * 5000, b"x"])
def test_files_with_leading_zeros_keep_every_byte_and_their_size(tmp_path: Path, data: bytes):
    target = tmp_path / "file"
    seed_files._write(target, data, 1_700_000_000)
    assert target.read_bytes() == data and target.stat().st_size == len(data)
