"""Load benchmark for `k8sseed serve`: a rack powering on, in three load models.

Builds a profile of --clients nodes and starts `k8sseed serve` on loopback (a fresh server for each model),
then prints requests/s, latency percentiles and errors for:

- stress (closed loop): every client at once on its own keep-alive connection fetches its seed the way
  cloud-init's nocloud-net does (meta-data, user-data, vendor-data, network-config by MAC), then posts its
  10 signed status reports, each request sent the moment the previous answer arrives (--think-ms pauses
  before each report). With no think time this measures the server's throughput, and by Little's law the
  mean latency is clients / throughput: p99 < 50 ms at 500 clients needs over 10 000 requests/s.
- wrk: the same closed loop with wrk (Debian package `wrk`) as the load generator, in C: it takes far
  less CPU than the Python clients, so the server gets most of the machine (see bench/wrk_stress.py).
- rack: each node powers on at a random moment within --power-on-spread-ms, fetches its seed at once and
  reports its phases as they progress (--phase-ms MIN,MAX per phase), one request per connection, as the
  node's cloud-init and k8sseed-report do (see bench/rack_model.py). The same load against a server that does
  nothing (bench/null_server.py) is printed beside it: what the Python load generator itself adds.
- burst: every node asks for its seed file in the same instant, --clients connections at once, one request
  each, with ab (Debian package `apache2-utils`, in C) as the load generator (see bench/ab_burst.py).

Asserts nothing (figures vary with the machine). Goal on 2 cores: zero errors, p99 under 50 ms; each model
says whether it met it. The load generator is Python on the same machine: it takes CPU from the server.
Usage: python bench/serve_load.py [--model all|stress|wrk|rack|burst] [--clients 500] [--rounds 1] [--think-ms 0]
       [--power-on-spread-ms 2000] [--phase-ms 200,2000] [--seed 1] [--keep-build DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_burst import SEED_FILES as BURST_FILES
from ab_burst import run_ab
from build_benchmark import profile_text
from rack_model import peak_rate, run_rack
from wrk_stress import run_wrk, write_request_files

from k8sseed.secrets import read_secret
from k8sseed.serve.reports import signed_body

K8SSEED = str(Path(sys.executable).parent / "k8sseed")
PHASES = ("prepare-os", "runtime", "kubernetes-packages", "load-balancer", "kubeadm")
SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")
WRK_MAX_RATE = 60_000  # requests/s wrk's lists are sized for (no report sent twice below it; 2 cores: ~35 000)


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
    parser.add_argument("--model", choices=("all", "stress", "wrk", "rack", "burst"), default="all",
                        help="all: stress, then wrk (if installed), then rack, then burst (if ab is installed)")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1, help="stress: seed fetch + reports sequences per client")
    parser.add_argument("--think-ms", type=float, default=0, help="stress: pause before each status report")
    parser.add_argument("--ramp-ms", type=float, default=0, help="stress: spread client starts over this time")
    parser.add_argument("--power-on-spread-ms", type=float, default=2000, help="rack: nodes power on within this")
    parser.add_argument("--phase-ms", default="200,2000", help="rack: MIN,MAX duration of a bootstrap phase")
    parser.add_argument("--seed", type=int, default=1, help="rack: random seed of the power-on and phase times")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="wrk: how long to run")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--keep-build", metavar="DIR", help="build into DIR and reuse that build in later runs")
    args = parser.parse_args()
    phase_ms = tuple(float(x) for x in args.phase_ms.split(","))
    if len(phase_ms) != 2 or not 0 <= phase_ms[0] <= phase_ms[1]:
        parser.error("--phase-ms takes MIN,MAX in milliseconds")
    with tempfile.TemporaryDirectory(prefix="k8sseed-serve-bench-") as tmp:
        work = Path(args.keep_build) if args.keep_build else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        profile, secret, out = work / "bench.yaml", work / "bench.secret", work / "out"
        wanted = profile_text(args.clients).replace(
            "nodes:\n", "seedServer:\n  allowedNetworks: [127.0.0.0/8]\nnodes:\n", 1)
        if (out / "manifest.json").is_file() and profile.is_file() and profile.read_text() == wanted:
            print(f"reusing the build of {args.clients} seeds in {out}; load average {os.getloadavg()[0]:.2f} "
                  f"on {os.cpu_count()} CPUs")
        else:
            profile.write_text(wanted)
            secret.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
            secret.chmod(0o600)
            started = time.perf_counter()
            subprocess.run([K8SSEED, "build", str(profile), "-o", str(out), "--secret", str(secret), "--force"],
                           check=True, stdout=subprocess.DEVNULL)
            print(f"built {args.clients} seeds in {time.perf_counter() - started:.1f} s; load average "
                  f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        for state in work.glob("state-*"):
            shutil.rmtree(state)  # every server starts with an empty status board
        nodes = json.loads((out / "manifest.json").read_text())["nodes"]
        cluster_secret = read_secret(secret)
        key_of = {n["name"]: cluster_secret.status_key(n["name"]) for n in nodes}
        if args.model in ("all", "stress"):
            with serving(work, out, profile, secret, "stress") as (port, pid):
                cpu = _cpu(pid), time.process_time()
                stats, wall = asyncio.run(load(port, nodes, key_of, args.rounds, args.think_ms / 1000,
                                               args.ramp_ms / 1000))
                cpu = _cpu(pid) - cpu[0], time.process_time() - cpu[1]
            print(f"stress (closed loop): {args.clients} clients x {args.rounds} round(s) on keep-alive connections: "
                  f"{len(SEED_FILES)} seed fetches + {2 * len(PHASES)} signed status reports each, "
                  f"think {args.think_ms:g} ms, ramp {args.ramp_ms:g} ms")
            count = len(stats.latencies)
            print(f"  requests {count}  errors {sum(stats.errors.values())} {stats.errors or ''}  wall {wall:.2f} s  "
                  f"{count / wall:.0f} requests/s  {stats.bytes / wall / 1e6:.1f} MB/s  server CPU {cpu[0]:.2f} s  "
                  f"load generator CPU {cpu[1]:.2f} s")
            report_latency("  latency ms", stats.latencies, bool(stats.errors))
            if not args.think_ms and count:
                print(f"  (Little's law: {args.clients} clients always waiting -> mean latency {args.clients} / "
                      f"{count / wall:.0f} per s = {args.clients / (count / wall) * 1000:.1f} ms)")
        if args.model in ("all", "wrk"):
            wrk_stress(args, work, out, profile, secret, nodes, key_of)
        if args.model in ("all", "rack"):
            with serving(work, out, profile, secret, "rack") as (port, pid):
                cpu = _cpu(pid), time.process_time()
                rack, wall = asyncio.run(run_rack(port, nodes, key_of, args.power_on_spread_ms, phase_ms, args.seed))
                cpu = _cpu(pid) - cpu[0], time.process_time() - cpu[1]
            every = rack.latencies["seed"] + rack.latencies["report"]
            print(f"rack: {args.clients} nodes power on within {args.power_on_spread_ms:g} ms, each fetches its "
                  f"{len(SEED_FILES)} seed files at once, then reports {len(PHASES)} phases of "
                  f"{phase_ms[0]:g}-{phase_ms[1]:g} ms; one request per connection")
            print(f"  requests {len(every)}  errors {sum(rack.errors.values())} {rack.errors or ''}  "
                  f"wall {wall:.2f} s  mean {len(every) / wall:.0f} requests/s  "
                  f"peak {peak_rate(rack.finished_at):.0f} requests/s "
                  f"(100 ms window)  server CPU {cpu[0]:.2f} s  load generator CPU {cpu[1]:.2f} s")
            report_latency("  seed fetch latency ms", rack.latencies["seed"], None)
            report_latency("  status report latency ms", rack.latencies["report"], None)
            report_latency("  all requests latency ms", every, bool(rack.errors))
            with serving(work, out, profile, secret, "null", null=True) as (port, pid):
                floor, _ = asyncio.run(run_rack(port, nodes, key_of, args.power_on_spread_ms, phase_ms, args.seed))
            report_latency("  the same load against a server that does nothing (the load generator's own floor): "
                           "all requests latency ms", floor.latencies["seed"] + floor.latencies["report"], None)
        if args.model in ("all", "burst"):
            burst(args, work, out, profile, secret, nodes)


def burst(args: argparse.Namespace, work: Path, out: Path, profile: Path, secret: Path, nodes: list[dict]) -> None:
    """--clients connections in the same instant, one request each, per seed file: ab (C) as the generator."""
    if shutil.which("ab") is None:
        print("burst: ab is not installed (sudo apt-get install apache2-utils): skipped")
        return
    worker = next(n for n in nodes if n["role"] == "worker")
    with serving(work, out, profile, secret, "burst") as (port, pid):
        cpu = _cpu(pid)
        runs = [(name, run_ab(f"http://127.0.0.1:{port}/by-mac/{worker['mac']}/{name}", args.clients))
                for name in BURST_FILES]
        cpu = _cpu(pid) - cpu
    print(f"burst (ab, C): {args.clients} connections opened in the same instant, one request each, for each seed "
          f"file in turn (all fetch {worker['name']}'s files by MAC); server CPU {cpu:.2f} s")
    met = True
    for name, figures in runs:
        print(f"  {name:<15} requests {figures['complete']:.0f}  errors {figures['errors']:.0f}  "
              f"{figures['rate']:.0f} requests/s  latency ms: p50 {figures.get('p50', float('nan')):.0f}  "
              f"p90 {figures.get('p90', float('nan')):.0f}  p99 {figures.get('p99', float('nan')):.0f}  "
              f"max {figures.get('p100', float('nan')):.0f}")
        met = met and not figures["errors"] and figures.get("p99", float("inf")) < 50
    print(f"  goal (zero errors, p99 < 50 ms): {'met' if met else 'NOT met'}")


def wrk_stress(args: argparse.Namespace, work: Path, out: Path, profile: Path, secret: Path, nodes: list[dict],
               key_of: dict[str, str]) -> None:
    """The closed loop again with wrk as the load generator, --clients connections for --wrk-seconds."""
    if shutil.which("wrk") is None:
        print("wrk: not installed (sudo apt-get install wrk): closed loop with a C load generator skipped")
        return
    per_thread = WRK_MAX_RATE * args.wrk_seconds // args.wrk_threads
    lists: list[list[bytes]] = [[] for _ in range(args.wrk_threads)]
    for thread, requests in enumerate(lists):
        mine = nodes[thread::args.wrk_threads]
        while len(requests) < per_thread:
            for n in mine:
                requests.extend(r for r, _ in requests_for(n["name"], n["mac"], key_of[n["name"]], 1))
    write_request_files(work / "wrk", lists)
    with serving(work, out, profile, secret, "wrk") as (port, pid):
        cpu = _cpu(pid)
        figures = run_wrk(port, work / "wrk", args.wrk_threads, args.clients, args.wrk_seconds)
        cpu = _cpu(pid) - cpu
    print(f"stress with wrk (closed loop, C load generator): {args.clients} keep-alive connections, "
          f"{args.wrk_threads} threads, {args.wrk_seconds} s, the same 4 seed fetches : 10 signed reports mix")
    rate = float(figures["rate"])  # type: ignore[arg-type]
    print(f"  requests {figures['requests']}  errors {figures['errors']}  {rate:.0f} requests/s  "
          f"server CPU {cpu:.2f} s")
    print(f"  latency ms: p50 {figures['p50']:.1f}  p90 {figures['p90']:.1f}  p99 {figures['p99']:.1f}")
    met = not figures["errors"] and float(figures["p99"]) < 50  # type: ignore[arg-type]
    print(f"  goal (zero errors, p99 < 50 ms): {'met' if met else 'NOT met'}")
    if int(figures["requests"]) >= per_thread * args.wrk_threads:  # type: ignore[call-overload]
        print("  note: wrk went through its request lists: repeated reports were refused as replays")


def report_latency(title: str, seconds: list[float], errors: bool | None) -> None:
    """Percentiles, and with errors given (True/False) whether the goal is met."""
    ms = [x * 1000 for x in seconds]
    if not ms:
        print(f"{title}: no answers")
        return
    p99 = percentile(ms, 0.99)
    print(f"{title}: p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}  p99 {p99:.1f}  "
          f"max {max(ms):.1f}  mean {statistics.fmean(ms):.1f}")
    if errors is not None:
        print(f"  goal (zero errors, p99 < 50 ms): {'met' if not errors and p99 < 50 else 'NOT met'}")


@contextmanager
def serving(work: Path, out: Path, profile: Path, secret: Path, name: str,
            null: bool = False) -> Iterator[tuple[int, int]]:
    """A fresh `k8sseed serve` (cold caches, empty status) on a free loopback port: (port, pid); with `null`,
    bench/null_server.py instead."""
    log_path = work / f"serve-{name}.log"
    state = work / f"state-{name}"
    log = log_path.open("w")
    command = [sys.executable, str(Path(__file__).resolve().parent / "null_server.py")] if null else [
        K8SSEED, "serve", str(out), "--profile", str(profile), "--secret", str(secret), "--listen", "127.0.0.1:0",
        "--state-dir", str(state)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # a loaded machine: imports alone can take tens of seconds
        while not (match := re.search(r"listening on http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("k8sseed serve did not start:\n" + log_path.read_text())
            time.sleep(0.05)
        loop_kind = re.search(r"event loop (\S+)", log_path.read_text())
        if not null:
            print(f"server ({name}): event loop {loop_kind.group(1) if loop_kind else '?'}")
        yield int(match.group(1)), server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
