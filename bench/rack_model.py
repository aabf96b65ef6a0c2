"""The rack model of bench/serve_load.py: a rack powering on, each node as its bootstrap talks to the server.

Every node powers on at a random moment within --power-on-spread-ms (firmware and kernel boot times differ
between machines), fetches its four NoCloud files one after the other as cloud-init does, then runs its
bootstrap phases back to back and reports each phase's start and end as k8sseed-report does: one request per
TCP connection (urllib opens a new one each time, so does cloud-init's fetch), signed. Phases last a random
--phase-ms MIN,MAX; real phases take minutes, so the model sends a rack's reports far faster than a rack
would. Latency is what a node waits: connect, send, and the whole answer.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from functools import partial

from k8sseed.serve.reports import signed_body

PHASES = ("prepare-os", "runtime", "kubernetes-packages", "load-balancer", "kubeadm")
SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")


@dataclass
class RackStats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"seed": [], "report": []})
    finished_at: list[float] = field(default_factory=list)  # perf_counter of each answer, for the peak rate
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


@dataclass(frozen=True)
class Step:
    kind: str  # "seed" or "report"
    request: bytes
    expect: int
    delay: float  # seconds to wait before sending it (after the previous answer)


def node_steps(node: str, mac: str, key: str, rng: random.Random, phase_ms: tuple[float, float]) -> list[Step]:
    """One node's requests, built and signed before the clock starts (signing is the node's work)."""
    steps = [Step("seed", f"GET /by-mac/{mac}/{name} HTTP/1.1\r\nHost: seed\r\nConnection: close\r\n\r\n".encode(),
                  200, 0.0) for name in SEED_FILES]
    now = time.time()
    for phase in PHASES:
        for state in ("started", "done"):
            # done: after the phase ran; started: right after the previous phase's done
            delay = rng.uniform(*phase_ms) / 1000 if state == "done" else 0.0
            now += delay + 1e-3  # the node's clock moves on between two reports: the newer one is shown
            body, signature = signed_body(key, node, phase, state, now, secrets.token_hex(16))
            head = (f"POST /status/{node} HTTP/1.1\r\nHost: seed\r\nContent-Type: application/json\r\n"
                    f"X-K8sseed-Signature: {signature}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            steps.append(Step("report", head.encode() + body, 204, delay))
    return steps


class OneRequest(asyncio.Protocol):
    """One request on its own connection; the future gets the status code (or an exception)."""

    def __init__(self, request: bytes, answer: asyncio.Future[int]) -> None:
        self.request = request
        self.answer = answer
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer.done():
            return
        at = self.buffer.find(b"\r\nContent-Length: ", 0, end)
        length = int(self.buffer[at + 18:self.buffer.find(b"\r\n", at + 18)]) if at >= 0 else 0
        if len(self.buffer) >= end + 4 + length:
            self.answer.set_result(int(self.buffer[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionError(exc.__class__.__name__ if exc else "closed early"))


async def one_node(port: int, steps: list[Step], start_at: float, stats: RackStats) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    for step in steps:
        if step.delay:
            await asyncio.sleep(step.delay)
        answer: asyncio.Future[int] = loop.create_future()
        sent = time.perf_counter()
        try:
            transport, _ = await loop.create_connection(partial(OneRequest, step.request, answer), "127.0.0.1", port)
        except OSError as exc:
            stats.error(f"connect: {exc.__class__.__name__}")
            continue
        try:
            status = await asyncio.wait_for(answer, 30)
        except (ConnectionError, TimeoutError) as exc:
            stats.error(f"{step.kind}: {exc.__class__.__name__}")
            continue
        finally:
            transport.close()
        done = time.perf_counter()
        stats.latencies[step.kind].append(done - sent)
        stats.finished_at.append(done)
        if status != step.expect:
            stats.error(f"{step.kind}: HTTP {status}")


async def run_rack(port: int, nodes: list[dict], key_of: dict[str, str], spread_ms: float,
                   phase_ms: tuple[float, float], seed: int) -> tuple[RackStats, float]:
    rng = random.Random(seed)
    planned = [(node_steps(n["name"], n["mac"], key_of[n["name"]], rng, phase_ms), rng.uniform(0, spread_ms) / 1000)
               for n in nodes]
    stats = RackStats()
    begin = time.perf_counter()
    await asyncio.gather(*(one_node(port, steps, begin + offset, stats) for steps, offset in planned))
    return stats, time.perf_counter() - begin


def peak_rate(finished_at: list[float], window: float = 0.1) -> float:
    """The most answers in any `window` seconds (sliding), per second."""
    times = sorted(finished_at)
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best / window
