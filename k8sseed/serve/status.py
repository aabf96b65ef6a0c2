"""The bootstrap status of every node, as reported to the server: kept in memory, saved to the state dir."""

from __future__ import annotations

import json
import os
import tempfile
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8sseed.serve.reports import Report, ReportRefused
from k8sseed.serve.seen_signatures import SeenSignatures

STATUS_FILE = "status.json"  # the board: one row per reporting node, rewritten whole (small)


@dataclass
class NodeStatus:
    node: str
    phase: str
    state: str
    since: float  # server time the node entered this phase/state
    reported: float  # the node's time of its newest accepted report
    client: str
    last_error: list[str]


class StatusBoard:
    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / STATUS_FILE if state_dir else None
        self.nodes: dict[str, NodeStatus] = {}
        earlier: dict[str, float] = {}
        if self.path and self.path.is_file():
            self.nodes, earlier = load_status(self.path)  # older state dirs kept the signatures here
        self.seen = SeenSignatures(state_dir, earlier, now=clock.time())
        self.dirty = False

    def accept(self, report: Report, signature: str, client: str, now: float | None = None) -> bool:
        """Records a verified report; False when it is older than what the board shows (it arrived late)."""
        now = clock.time() if now is None else now
        if signature in self.seen:
            raise ReportRefused(409, f"report from {report.node} ({report.phase} {report.state}) was already "
                                     "received: a replay")
        self.seen.add(signature, report.time, now)
        self.dirty = True
        held = self.nodes.get(report.node)
        if held is not None and report.time <= held.reported:
            return False  # reports run in the background and may overtake each other: the newest one stands
        last_error = list(report.lines) if report.state == "failed" else (held.last_error if held else [])
        same = held is not None and (held.phase, held.state) == (report.phase, report.state)
        since = held.since if held is not None and same else now
        self.nodes[report.node] = NodeStatus(report.node, report.phase, report.state, since, report.time, client,
                                             last_error)
        return True

    def rows(self, nodes: dict[str, str]) -> list[dict[str, Any]]:
        """One row per node of the build (name -> role), reported or not, then reporters no longer in it."""
        out = []
        for name in [*nodes, *sorted(set(self.nodes) - set(nodes))]:
            held = self.nodes.get(name)
            row: dict[str, Any] = {"node": name, "role": nodes.get(name, "?"), "phase": None, "state": None,
                                   "since": None, "lastError": [], "client": None}
            if held:
                row.update(phase=held.phase, state=held.state, since=held.since, lastError=held.last_error,
                           client=held.client)
            out.append(row)
        return out

    def save(self, now: float | None = None) -> None:
        """Writes the board and the signatures accepted since the last save; it runs on the event loop."""
        if not self.path or not self.dirty:
            return
        self.seen.save(clock.time() if now is None else now)
        # One json.dumps call in compact form takes C's encoder (json.dump with indent takes the pure-Python one).
        text = json.dumps({"nodes": [vars(s) for s in self.nodes.values()]}, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".status-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, self.path)
        self.dirty = False


def load_status(path: Path) -> tuple[dict[str, NodeStatus], dict[str, float]]:
    try:
        data = json.loads(path.read_text("utf-8"))
        nodes = {e["node"]: NodeStatus(**e) for e in data.get("nodes", [])}
        seen = {str(k): float(v) for k, v in (data.get("seen") or {}).items()}
        return nodes, seen
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}, {}


def table(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """The `k8sseed status` table: node, role, phase, since, last error."""
    now = clock.time() if now is None else now
    header = ("NODE", "ROLE", "PHASE", "SINCE", "LAST ERROR")
    lines = [header]
    for row in rows:
        phase = f"{row['phase']} {row['state']}" if row["phase"] else "no report yet"
        since = "-" if row["since"] is None else _ago(now - row["since"])
        error = row["lastError"][-1] if row["lastError"] else "-"
        lines.append((row["node"], row["role"], phase, since, error[:100]))
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines) + "\n"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"
