"""The seed server's pure parts: range parsing, report verification, the status table, iPXE quoting."""

from __future__ import annotations

import json

import pytest

from k8sseed.profile.model import Pxe
from k8sseed.serve import ipxe
from k8sseed.serve.ranges import Unsatisfiable, byte_range
from k8sseed.serve.reports import FRESH_SECONDS, ReportRefused, sign, signed_body, verify
from k8sseed.serve.status import StatusBoard, table

KEY = "11" * 32
OTHER = "22" * 32


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-0", (0, 1)), ("bytes=0-99", (0, 100)), ("bytes=900-", (900, 100)),
    ("bytes=-10", (990, 10)), ("bytes=-5000", (0, 1000)), ("bytes=10-5000", (10, 990)),
    ("bytes=0-1,5-9", None), ("items=0-1", None), ("bytes=5-3", None), ("bytes=-", None), ("bytes= 1-2", None),
])
def test_byte_range(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)


def test_report_verification():
    now = 1_800_000_000.0
    body, signature = signed_body(KEY, "cp-1", "runtime", "failed", now, "ab" * 16, ["x" * 5000, "last"])
    report = verify("cp-1", body, signature, KEY, now + 5)
    assert (report.phase, report.state, report.lines[-1]) == ("runtime", "failed", "last")
    assert len(report.lines[0]) == 1000, "long lines are cut"
    refusals = {
        "other key": ("cp-1", body, sign(OTHER, body), KEY, now),
        "no signature": ("cp-1", body, None, KEY, now),
        "wrong node": ("cp-2", body, signature, KEY, now),
        "unknown node": ("cp-9", body, signature, None, now),
        "stale": ("cp-1", body, signature, KEY, now + FRESH_SECONDS + 1),
        "future": ("cp-1", body, signature, KEY, now - FRESH_SECONDS - 1),
    }
    for why, args in refusals.items():
        with pytest.raises(ReportRefused):
            verify(*args)
            pytest.fail(why)
    for bad in ({"node": "cp-1", "phase": "Run; rm", "state": "done", "time": now, "nonce": "ab" * 8},
                {"node": "cp-1", "phase": "runtime", "state": "maybe", "time": now, "nonce": "ab" * 8},
                {"node": "cp-1", "phase": "runtime", "state": "done", "time": True, "nonce": "ab" * 8},
                {"node": "cp-1", "phase": "runtime", "state": "done", "time": now, "nonce": "ab" * 8, "lines": "x"}):
        raw = json.dumps(bad).encode()
        with pytest.raises(ReportRefused) as refused:
            verify("cp-1", raw, sign(KEY, raw), KEY, now)
        assert refused.value.status == 400


def test_board_shows_the_newest_report_and_refuses_replays(tmp_path):
    now = 1_800_000_000.0
    board = StatusBoard(tmp_path)
    first = signed_body(KEY, "cp-1", "runtime", "started", now, "a" * 16)
    later = signed_body(KEY, "cp-1", "runtime", "done", now + 1, "b" * 16)
    assert board.accept(verify("cp-1", *later, KEY, now), later[1], "10.0.0.1", now=now + 2) is True
    assert board.accept(verify("cp-1", *first, KEY, now), first[1], "10.0.0.1", now=now + 3) is False, \
        "a report that arrived late is taken, but the newer state stays on the board"
    assert board.nodes["cp-1"].state == "done"
    with pytest.raises(ReportRefused) as refused:
        board.accept(verify("cp-1", *later, KEY, now), later[1], "10.0.0.1", now=now + 4)
    assert refused.value.status == 409 and "replay" in str(refused.value)
    board.save()
    again = StatusBoard(tmp_path)
    assert again.nodes["cp-1"].state == "done", "the board survives a server restart"
    with pytest.raises(ReportRefused):
        again.accept(verify("cp-1", *first, KEY, now), first[1], "10.0.0.1", now=now + 5)
    text = table(again.rows({"cp-1": "control-plane", "w-1": "worker"}), now=now + 62)
    lines = text.splitlines()
    assert lines[0].split() == ["NODE", "ROLE", "PHASE", "SINCE", "LAST", "ERROR"]
    assert lines[1].split()[:5] == ["cp-1", "control-plane", "runtime", "done", "60s"]
    assert lines[2].split()[:5] == ["w-1", "worker", "no", "report", "yet"]


def test_ipxe_refuses_what_it_cannot_quote():
    pxe = Pxe("http://10.0.0.5/vmlinuz", "http://10.0.0.5/initrd", ("console=ttyS0",))
    script = ipxe.node_script("http://10.0.0.5:8080/", "cp-1", "control-plane", "52:54:00:00:00:01", pxe, b"x: 1\n")
    assert "network-config=eDogMQo=" in script and "${" not in script
    for base in ("http://10.0.0.5/${evil}/", "http://10.0.0.5/ a/", "#http://x/"):
        with pytest.raises(ValueError):
            ipxe.entry_script(base)
    with pytest.raises(ValueError):
        ipxe.node_script("http://10.0.0.5/", "cp-1", "control-plane", "52:54:00:00:00:01",
                         Pxe("http://10.0.0.5/vmlinuz", "http://10.0.0.5/initrd", ("a b",)), None)
