"""Seeds are handed to the disk as they are written (so the final syncfs before OUT is swapped in has little
left to wait for), and asking for that never fails a build."""

from __future__ import annotations

import os
from pathlib import Path

from k8sseed.writers import seed_files, writeback


def test_written_seed_files_are_queued_for_writeback(monkeypatch, tmp_path: Path):
    queued: list[int] = []
    monkeypatch.setattr(seed_files, "start_writeback", lambda fd: queued.append(os.fstat(fd).st_ino))
    target = tmp_path / "user-data"
    seed_files._write(target, b"#cloud-config\n" * 1000, 1_700_000_000)
    assert queued == [target.stat().st_ino]
    assert target.read_bytes() == b"#cloud-config\n" * 1000
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
