"""Load benchmark for `k8sseed serve`: a rack powering on at once.

Builds a profile of --clients nodes, starts `k8sseed serve` on loopback, then runs that many concurrent
clients, one per node, each on its own keep-alive connection: it fetches its seed the way cloud-init's
nocloud-net does (meta-data, user-data, vendor-data, network-config by MAC), then posts a signed status
report as each bootstrap phase starts and ends. Prints requests/s, latency percentiles and errors; asserts
nothing (figures vary with the machine). Goal on 2 cores: zero errors, p99 under 50 ms.
Usage: python bench/serve_load.py [--clients 500] [--rounds 1] [--think-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_benchmark import profile_text

from k8sseed.secrets import read_secret
from k8sseed.serve.reports import signed_body

K8SSEED = str(Path(sys.executable).parent / "k8sseed")
PHASES = ("prepare-os", "runtime", "kubernetes-packages", "load-balancer", "kubeadm")
SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.bytes = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def requests_for(node: str, mac: str, key: str, rounds: int) -> list[tuple[bytes, int]]:
    """Every request of one client, built and signed before the clock starts (signing is the node's work)."""
    out = []
    for _ in range(rounds):
        for name in SEED_FILES:
            out.append((f"GET /by-mac/{mac}/{name} HTTP/1.1\r\nHost: seed\r\n\r\n".encode(), 200))
        for phase in PHASES:
            for state in ("started", "done"):
                body, signature = signed_body(key, node, phase, state, time.time(), secrets.token_hex(16))
                head = (f"POST /status/{node} HTTP/1.1\r\nHost: seed\r\nContent-Type: application/json\r\n"
                        f"X-K8sseed-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n")
                out.append((head.encode() + body, 204))
    return out


class Client(asyncio.Protocol):
    """One machine on one keep-alive connection: its requests one after the other, each timed."""

    def __init__(self, requests: list[tuple[bytes, int]], think: float, stats: Stats,
                 done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.think = think
        self.stats = stats
        self.done = done
        self.index = 0
        self.buffer = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.index][0])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        at = self.buffer.find(b"\r\nContent-Length: ", 0, end)
        length = int(self.buffer[at + 18:self.buffer.find(b"\r\n", at + 18)])
        if len(self.buffer) < end + 4 + length:
            return
        self.stats.latencies.append(time.perf_counter() - self.sent_at)
        self.stats.bytes += end + 4 + length
        status = int(self.buffer[9:12])
        if status != self.requests[self.index][1]:
            self.stats.error(f"HTTP {status}")
        self.buffer = self.buffer[end + 4 + length:]
        self.index += 1
        if self.index == len(self.requests):
            assert self.transport is not None
            self.transport.close()
        elif self.think and self.requests[self.index][1] == 204:
            asyncio.get_running_loop().call_later(self.think, self._send)
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.index < len(self.requests):
            self.stats.error(f"connection lost: {exc.__class__.__name__ if exc else 'closed'}")
        if not self.done.done():
            self.done.set_result(None)


async def client(port: int, requests: list[tuple[bytes, int]], think: float, start_at: float, stats: Stats) -> None:
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        await loop.create_connection(lambda: Client(requests, think, stats, done), "127.0.0.1", port)
    except OSError as exc:
        stats.error(f"connect: {exc.__class__.__name__}")
        return
    await done


async def load(port: int, nodes: list[dict], key_of: dict[str, str], rounds: int, think: float,
               ramp: float) -> tuple[Stats, float]:
    stats = Stats()
    planned = [requests_for(n["name"], n["mac"], key_of[n["name"]], rounds) for n in nodes]
    begin = time.perf_counter()
    await asyncio.gather(*(client(port, requests, think, begin + ramp * i / max(1, len(nodes)), stats)
                           for i, requests in enumerate(planned)))
    return stats, time.perf_counter() - begin


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1, help="seed fetch + reports sequences per client")
    parser.add_argument("--think-ms", type=float, default=0, help="pause before each status report")
    parser.add_argument("--ramp-ms", type=float, default=0, help="spread client starts over this time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8sseed-serve-bench-") as tmp:
        work = Path(tmp)
        profile = work / "bench.yaml"
        profile.write_text(profile_text(args.clients).replace(
            "nodes:\n", "seedServer:\n  allowedNetworks: [127.0.0.0/8]\nnodes:\n", 1))
        secret = work / "bench.secret"
        secret.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
        secret.chmod(0o600)
        out = work / "out"
        started = time.perf_counter()
        subprocess.run([K8SSEED, "build", str(profile), "-o", str(out), "--secret", str(secret)], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"built {args.clients} seeds in {time.perf_counter() - started:.1f} s")
        nodes = json.loads((out / "manifest.json").read_text())["nodes"]
        cluster_secret = read_secret(secret)
        key_of = {n["name"]: cluster_secret.status_key(n["name"]) for n in nodes}
        log = (work / "serve.log").open("w")
        server = subprocess.Popen([K8SSEED, "serve", str(out), "--profile", str(profile), "--secret", str(secret),
                                   "--listen", "127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (match := re.search(r"listening on http://127\.0\.0\.1:(\d+)/",
                                          (work / "serve.log").read_text())):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("k8sseed serve did not start:\n" + (work / "serve.log").read_text())
                time.sleep(0.05)
            port = int(match.group(1))
            print("server: " + next(line for line in (work / "serve.log").read_text().splitlines()
                                    if "listening on" in line).split("k8sseed serve: ", 1)[1])
            cpu_before = _cpu(server.pid)
            stats, wall = asyncio.run(load(port, nodes, key_of, args.rounds, args.think_ms / 1000,
                                           args.ramp_ms / 1000))
            server_cpu = _cpu(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        count = len(stats.latencies)
        ms = [x * 1000 for x in stats.latencies]
        print(f"{args.clients} concurrent clients x {args.rounds} round(s): {len(SEED_FILES)} seed fetches + "
              f"{2 * len(PHASES)} signed status reports each, think {args.think_ms:g} ms, ramp {args.ramp_ms:g} ms")
        print(f"requests {count}  errors {sum(stats.errors.values())} {stats.errors or ''}  wall {wall:.2f} s  "
              f"{count / wall:.0f} requests/s  {stats.bytes / wall / 1e6:.1f} MB/s  server CPU {server_cpu:.2f} s")
        if ms:
            print(f"latency ms: p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}  "
                  f"p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}  mean {statistics.fmean(ms):.1f}")
        goal = not stats.errors and ms and percentile(ms, 0.99) < 50
        print(f"goal (zero errors, p99 < 50 ms): {'met' if goal else 'NOT met'}")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
