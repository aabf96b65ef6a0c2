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


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes,
                   stats: Stats, expect: int) -> None:
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
    body = await reader.readexactly(length)
    stats.latencies.append(time.perf_counter() - start)
    stats.bytes += len(head) + len(body)
    if status != expect:
        stats.error(f"HTTP {status}")


async def client(port: int, node: str, mac: str, key: str, rounds: int, think: float, start_at: float,
                 stats: Stats) -> None:
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        stats.error(f"connect: {exc.__class__.__name__}")
        return
    try:
        for _ in range(rounds):
            for name in SEED_FILES:
                request = f"GET /by-mac/{mac}/{name} HTTP/1.1\r\nHost: seed\r\n\r\n".encode()
                await exchange(reader, writer, request, stats, 200)
            for phase in PHASES:
                for state in ("started", "done"):
                    if think:
                        await asyncio.sleep(think)
                    body, signature = signed_body(key, node, phase, state, time.time(), secrets.token_hex(16))
                    request = (f"POST /status/{node} HTTP/1.1\r\nHost: seed\r\nContent-Type: application/json\r\n"
                               f"X-K8sseed-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
                               ).encode() + body
                    await exchange(reader, writer, request, stats, 204)
    except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError) as exc:
        stats.error(f"{exc.__class__.__name__}")
    finally:
        writer.close()


async def load(port: int, nodes: list[dict], key_of: dict[str, str], rounds: int, think: float,
               ramp: float) -> tuple[Stats, float]:
    stats = Stats()
    begin = time.perf_counter()
    tasks = [client(port, n["name"], n["mac"], key_of[n["name"]], rounds, think,
                    begin + ramp * i / max(1, len(nodes)), stats) for i, n in enumerate(nodes)]
    await asyncio.gather(*tasks)
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
