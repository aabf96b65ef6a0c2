"""Benchmark: build an N-node profile and compare with cloud-localds packing the same seeds.

Prints wall time, peak RSS and bytes written for `k8sseed build` at several sizes (cost must grow
linearly), then the time cloud-localds (Debian cloud-image-utils) takes to pack the same user-data.
Usage: python bench/build_benchmark.py [--nodes 1000] [--skip-localds]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
K8SSEED = str(Path(sys.executable).parent / "k8sseed")


def profile_text(nodes: int) -> str:
    base = (REPO / "profiles" / "reference.yaml").read_text().split("\nnodes:\n")[0]
    base = base.replace("10.20.100.10:6443", "10.21.100.10:6443")  # VIP outside the /16 node subnet
    lines = [base.replace("nameservers: [10.20.0.1]", "nameservers: [10.20.0.1]"), "nodes:"]
    for i in range(nodes):
        role = "control-plane" if i < 3 else "worker"
        name = f"cp-{i + 1}" if i < 3 else f"worker-{i - 2}"
        ip = f"10.20.{(i + 11) // 250}.{(i + 11) % 250 + 1}/16"
        mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        lines.append(f'  - {{name: {name}, role: {role}, ip: {ip}, mac: "{mac}"}}')
    return "\n".join(lines).replace("podSubnet: 192.168.0.0/16", "podSubnet: 192.168.0.0/16") + "\n"


def run_build(work: Path, nodes: int) -> dict[str, float]:
    profile = work / f"bench-{nodes}.yaml"
    profile.write_text(profile_text(nodes))
    secret = work / f"bench-{nodes}.secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    secret.chmod(0o600)
    out = work / f"out-{nodes}"
    start = time.perf_counter()
    proc = subprocess.Popen([K8SSEED, "build", str(profile), "-o", str(out), "--secret", str(secret)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"build of {nodes} nodes failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"nodes": nodes, "wall": wall, "rss_mb": usage.ru_maxrss / 1024, "bytes": written, "out": out}


def run_localds(out: Path, nodes: list[str]) -> float:
    tool = shutil.which("cloud-localds")
    if not tool:
        return float("nan")
    target = out.parent / "localds"
    target.mkdir(exist_ok=True)
    start = time.perf_counter()
    for name in nodes:
        seed = out / name
        subprocess.run([tool, "--network-config", str(seed / "network-config"), str(target / f"{name}.iso"),
                        str(seed / "user-data"), str(seed / "meta-data")], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--skip-localds", action="store_true")
    parser.add_argument("--workdir", default=None, help="where to build (default: the system temp dir)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    with tempfile.TemporaryDirectory(prefix="k8sseed-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        print(f"{'nodes':>6} {'wall s':>8} {'ms/node':>8} {'peak RSS MB':>12} {'bytes written':>14}")
        results = []
        for n in sorted({max(1, args.nodes // 4), max(1, args.nodes // 2), args.nodes}):
            r = run_build(work, n)
            results.append(r)
            print(f"{n:>6} {r['wall']:>8.2f} {1000 * r['wall'] / n:>8.2f} {r['rss_mb']:>12.1f} {r['bytes']:>14}")
        biggest = results[-1]
        for a, b in itertools.pairwise(results):
            marginal = 1000 * (b["wall"] - a["wall"]) / (b["nodes"] - a["nodes"])
            print(f"marginal cost {a['nodes']}->{b['nodes']} nodes: {marginal:.2f} ms/node "
                  "(about equal from step to step = linear; the rest is fixed start-up cost)")
        goal = "met" if biggest["wall"] < 3 and biggest["rss_mb"] < 200 else "NOT met"
        print(f"goal (under 3 s and 200 MB for {args.nodes} nodes): {goal}")
        if not args.skip_localds:
            names = sorted(p.name for p in biggest["out"].iterdir() if (p / "user-data").is_file())
            localds = run_localds(biggest["out"], names)
            print(f"cloud-localds packing the same {len(names)} seeds: {localds:.2f} s "
                  f"(k8sseed whole build is x{localds / biggest['wall']:.1f} faster; goal: at least x4)")


if __name__ == "__main__":
    main()
