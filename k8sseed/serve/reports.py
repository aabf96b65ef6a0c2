"""Signed bootstrap status reports: what a node sends and how the server checks it.

A node signs the exact request body with HMAC-SHA256 under its own key, derived from the cluster secret with
the HKDF label k8sseed/v1/status-key/<node> (k8sseed.secrets.LABEL_STATUS_KEY), and sends it as
`X-K8sseed-Signature: v1=<hex>`. The body is JSON: node, phase, state, time (the node's Unix time), nonce and,
for a failed phase, lines (the last lines of its bootstrap log). A report is accepted only if it is signed with
that node's key, fresh (time within FRESH_SECONDS of the server's clock) and not seen before (the server keeps
the signatures of the window's reports), so a captured report cannot be replayed. The time is the moment of
the event on the node (the bootstrap script's clock, not the reporter's): reports sent in the background may
arrive out of order, and the newest one is what the status shows.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

SIGNATURE_HEADER = "x-k8sseed-signature"
FRESH_SECONDS = 900
STATES = ("started", "done", "failed")
_PHASE = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_LINES = 50
MAX_LINE = 1000


class ReportRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Report:
    node: str
    phase: str
    state: str
    time: float
    nonce: str
    lines: tuple[str, ...]


def sign(key_hex: str, body: bytes) -> str:
    return "v1=" + hmac.digest(bytes.fromhex(key_hex), body, "sha256").hex()


def signed_body(key_hex: str, node: str, phase: str, state: str, time: float, nonce: str,
                lines: list[str] | None = None) -> tuple[bytes, str]:
    """A report as the node's k8sseed-report builds it (for tests and the load benchmark)."""
    data: dict[str, object] = {"node": node, "phase": phase, "state": state, "time": time, "nonce": nonce}
    if lines is not None:
        data["lines"] = lines
    body = json.dumps(data, sort_keys=True).encode("utf-8")
    return body, sign(key_hex, body)


def verify(node: str, body: bytes, signature: str | None, key_hex: str | None, now: float) -> Report:
    """The report, or ReportRefused with why (forged, stale, malformed)."""
    if key_hex is None:
        raise ReportRefused(404, f"no node '{node}' in this build")
    if not signature or not hmac.compare_digest(sign(key_hex, body), signature.strip()):
        raise ReportRefused(403, f"bad or missing signature for node '{node}' (forged, or signed for another node)")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReportRefused(400, "report body is not JSON") from exc
    if not isinstance(data, dict):
        raise ReportRefused(400, "report body is not a JSON object")
    if data.get("node") != node:
        raise ReportRefused(403, f"report for '{data.get('node')}' posted as '{node}'")
    phase, state, time, nonce = data.get("phase"), data.get("state"), data.get("time"), data.get("nonce")
    if not isinstance(phase, str) or not _PHASE.fullmatch(phase):
        raise ReportRefused(400, "report phase missing or malformed")
    if state not in STATES:
        raise ReportRefused(400, f"report state must be one of {', '.join(STATES)}")
    if not isinstance(time, (int, float)) or isinstance(time, bool):
        raise ReportRefused(400, "report time missing")
    if abs(now - time) > FRESH_SECONDS:
        raise ReportRefused(409, f"report time is {now - time:+.0f} s off the server's clock (replayed, or the "
                                 f"node's clock is wrong): refused")
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        raise ReportRefused(400, "report nonce missing")
    raw_lines = data.get("lines", [])
    if not isinstance(raw_lines, list) or not all(isinstance(x, str) for x in raw_lines):
        raise ReportRefused(400, "report lines must be a list of strings")
    lines = tuple(x[:MAX_LINE] for x in raw_lines[-MAX_LINES:])
    return Report(node, phase, state, float(time), nonce, lines)
