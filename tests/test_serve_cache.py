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


def test_every_seed_file_is_read_before_the_first_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out"
    write_out(out, "first")
    outside = tmp_path / "outside"
    outside.write_text("OUTSIDE-SECRET\n")
    (out / "cp-1" / "network-config").unlink()
    (out / "cp-1" / "network-config").symlink_to(outside)
    generation, _ = OutDir(out).current()
    files, size = generation.preload()
    assert (files, size) == (2, len(b"user-data: first\n") + len(b"meta-data: first\n")), "the symlink is skipped"
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    assert generation.seed_bytes("cp-1", "user-data") == b"user-data: first\n"
    assert generation.seed_bytes("cp-1", "meta-data") == b"meta-data: first\n"
    assert opened == [], "the first request is answered from memory"
    with pytest.raises(SeedRefused) as refused:
        generation.seed_bytes("cp-1", "network-config")
    assert refused.value.status == 403 and opened, "what preloading skipped is still refused, on the request"


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


def test_report_signatures_are_saved_as_an_appended_journal_not_rewritten(tmp_path: Path):
    from k8sseed.serve.reports import signed_body, verify

    key, now = "11" * 32, 1_800_000_000.0
    board = StatusBoard(tmp_path)
    sent = [signed_body(key, "cp-1", "runtime", "started", now + i / 10, f"nonce-{i:04d}") for i in range(2001)]
    for body, signature in sent[:2000]:
        board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
    board.save(now)
    journal = tmp_path / "seen-000001.log"
    first = journal.read_bytes()
    assert len(first.splitlines()) == 2000
    status = (tmp_path / "status.json").read_text()
    assert "\n" not in status and ", " not in status, "compact: written by C's encoder in one call"
    assert "nonce" not in status and sent[0][1] not in status, "the board file holds no signatures"
    board.accept(verify("cp-1", *sent[2000], key, now), sent[2000][1], "10.0.0.1", now=now)
    board.save(now)
    grown = journal.read_bytes()
    assert grown.startswith(first) and len(grown.splitlines()) == 2001, "one line appended, nothing rewritten"
    with journal.open("a") as torn:
        torn.write("v1=" + "ab" * 10)  # a crash in the middle of a line
    again = StatusBoard(tmp_path)
    assert again.seen.times == board.seen.times and again.nodes == board.nodes
    nodes, seen = load_status(tmp_path / "status.json")
    assert seen == {} and nodes["cp-1"].state == "started"


def test_journal_segments_close_when_full_and_go_once_every_signature_in_them_is_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from k8sseed.serve import seen_signatures
    from k8sseed.serve.reports import FRESH_SECONDS
    from k8sseed.serve.seen_signatures import SeenSignatures

    monkeypatch.setattr(seen_signatures, "SEGMENT_LINES", 10)
    now = 1_800_000_000.0
    seen = SeenSignatures(tmp_path)
    for i in range(25):  # 10 per save: segments 1 and 2 fill up and close, 3 stays open
        seen.add(f"v1={i:064x}", now + i, now)
        if i % 10 == 9 or i == 24:
            seen.save(now)
    assert seen.segments() == ["seen-000001.log", "seen-000002.log", "seen-000003.log"]
    later = now + 9 + FRESH_SECONDS + 0.5  # every signature of segment 1 (times now..now+9) is stale now
    seen.add("v1=" + "f" * 64, later, later)
    assert "v1=" + "0" * 64 not in seen and f"v1={10:064x}" in seen, "stale ones leave the front of the set"
    seen.save(later)
    assert seen.segments() == ["seen-000002.log", "seen-000003.log"]
    restarted = SeenSignatures(tmp_path, now=later)
    assert set(restarted.times) == set(seen.times)
    restarted.add("v1=" + "e" * 64, later, later)
    restarted.save(later)
    assert restarted.segments()[-1] == "seen-000004.log", "a restarted server appends to a segment of its own"


def test_signatures_in_an_older_state_dirs_status_file_still_refuse_replays(tmp_path: Path):
    import json

    from k8sseed.serve.reports import ReportRefused, signed_body, verify

    key, now = "11" * 32, 1_800_000_000.0
    body, signature = signed_body(key, "cp-1", "runtime", "started", now, "nonce-0001")
    (tmp_path / "status.json").write_text(json.dumps({"nodes": [], "seen": {signature: now}}))
    board = StatusBoard(tmp_path)
    with pytest.raises(ReportRefused):
        board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
    board.dirty = True
    board.save()
    assert signature in (tmp_path / "seen-000001.log").read_text(), "carried over into the journal"


def test_fresh_signatures_survive_a_burst_and_still_refuse_replays(tmp_path: Path):
    from k8sseed.serve.reports import ReportRefused, signed_body, verify

    key, now = "11" * 32, 1_800_000_000.0
    board = StatusBoard(tmp_path)
    sent = [signed_body(key, "cp-1", "runtime", "started", now + i / 100, f"nonce-{i:05d}") for i in range(20_000)]
    for body, signature in sent:
        board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
    assert len(board.seen) == 20_000
    for body, signature in sent[::97]:
        with pytest.raises(ReportRefused):
            board.accept(verify("cp-1", body, signature, key, now), signature, "10.0.0.1", now=now)
    board.save(now)
    assert StatusBoard(tmp_path).seen.times == board.seen.times
