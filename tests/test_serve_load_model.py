"""bench/serve_load.py's load models against a real server: every request they send is one the server accepts
(a benchmark whose signed reports were refused, or that reached the server as replays, would measure refusals)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from conftest import REPO
from serve_support import Server, make_lab

from k8sseed.secrets import read_secret

sys.path.insert(0, str(REPO / "bench"))
from rack_model import PHASES, SEED_FILES, peak_rate, run_rack


def test_the_rack_model_is_answered_without_an_error(tmp_path: Path):
    lab = make_lab(tmp_path)
    nodes = json.loads((lab.out / "manifest.json").read_text())["nodes"]
    secret = read_secret(lab.secret)
    key_of = {n["name"]: secret.status_key(n["name"]) for n in nodes}
    with Server(lab) as server:
        stats, wall = asyncio.run(run_rack(server.port, nodes, key_of, 200, (5, 20), seed=3))
        log = server.log()
        board = {r["node"]: r for r in json.loads(server.get("/status.json")[2])["nodes"]}
    assert stats.errors == {}
    assert len(stats.latencies["seed"]) == len(nodes) * len(SEED_FILES)
    assert len(stats.latencies["report"]) == len(nodes) * 2 * len(PHASES)
    assert {(r["phase"], r["state"]) for r in board.values()} == {(PHASES[-1], "done")}, \
        "each node's reports arrive in order: the board shows its last phase done"
    assert log.count("POST /status/") == len(nodes) * 2 * len(PHASES) and "refused" not in log
    assert peak_rate(stats.finished_at) > 0 and wall < 60


def test_peak_rate_is_the_busiest_window():
    assert peak_rate([0.0, 0.01, 0.02, 0.5, 1.0], window=0.1) == 30
    assert peak_rate([], window=0.1) == 0
