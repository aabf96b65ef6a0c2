"""The seed server reads each seed file once per build: repeated requests cost no file system access, a swapped-in
build is read afresh, and refusals (symbolic links, missing files) are never remembered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from k8sseed.serve.seeds import OutDir, SeedRefused
from k8sseed.serve.status import StatusBoard, load_status


def write_out(out: Path, text: str) -> None:
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"nodes": [{"name": "cp-1", "role": "control-plane",
                                                              "mac": "52:54:00:00:00:01"}]}))
    (out / "cp-1").mkdir()
    for name in ("user-data", "meta-data", "network-config"):
        (out / "cp-1" / name).write_text(f"{name}: {text}\n")


def swap_in(tmp_path: Path, out: Path, text: str) -> None:
    """A rebuild as the server sees it: a complete new directory takes OUT's name."""
    fresh = tmp_path / f"fresh-{text}"
    write_out(fresh, text)
    out.rename(tmp_path / f"old-{text}")
    fresh.rename(out)


def test_a_seed_file_is_read_once_per_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out"
    write_out(out, "first")
    served = OutDir(out)
    generation, _ = served.current()
    assert generation.seed_bytes("cp-1", "user-data") == b"user-data: first\n"
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    for _ in range(3):
        assert generation.seed_bytes("cp-1", "user-data") == b"user-data: first\n"
    assert opened == [], "a repeated request is answered from memory"
    monkeypatch.undo()
    swap_in(tmp_path, out, "second")
    generation, changed = served.current()
    assert changed
    assert generation.seed_bytes("cp-1", "user-data") == b"user-data: second\n", "a new build is read afresh"
    assert generation.seed_bytes("cp-1", "meta-data") == b"meta-data: second\n"


def test_refusals_are_not_remembered(tmp_path: Path):
    out = tmp_path / "out"
    write_out(out, "first")
    outside = tmp_path / "outside"
    outside.write_text("OUTSIDE-SECRET\n")
    target = out / "cp-1" / "network-config"
    target.unlink()
    target.symlink_to(outside)
    generation, _ = OutDir(out).current()
    for _ in range(2):
        with pytest.raises(SeedRefused) as refused:
            generation.seed_bytes("cp-1", "network-config")
        assert refused.value.status == 403
    target.unlink()
    with pytest.raises(SeedRefused) as missing:
        generation.seed_bytes("cp-1", "network-config")
    assert missing.value.status == 404
    target.write_text("network-config: fixed\n")
    assert generation.seed_bytes("cp-1", "network-config") == b"network-config: fixed\n"
    with pytest.raises(SeedRefused):
        generation.seed_bytes("cp-1", "../cp-1/user-data")


def test_the_status_file_round_trips_in_compact_form(tmp_path: Path):
    board = StatusBoard(tmp_path)
    board.seen = {f"v1={i:064x}": 1_800_000_000.0 + i for i in range(2000)}
    board.dirty = True
    board.save()
    text = (tmp_path / "status.json").read_text()
    assert "\n" not in text and ", " not in text, "compact: written by C's encoder in one call"
    nodes, seen = load_status(tmp_path / "status.json")
    assert seen == board.seen and nodes == {}


def test_fresh_signatures_survive_a_burst_past_the_prune_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from k8sseed.serve import status
    from k8sseed.serve.reports import ReportRefused, signed_body, verify

    monkeypatch.setattr(status, "PRUNE_AT", 10)
    key, now = "11" * 32, 1_800_000_000.0
    board = StatusBoard(tmp_path)
    sent = [signed_body(key, "cp-1", "runtime", "started", now + i, f"nonce-{i:04d}") for i in range(40)]
    for body, signature in sent:
        board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
    assert len(board.seen) == 40
    for body, signature in sent:
        with pytest.raises(ReportRefused):
            board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
