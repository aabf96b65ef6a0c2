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
SPEEDUP_GOAL = 12  # over cloud-localds packing the same seeds
MEMORY_GOAL_MB = 75  # peak RSS of a 1000-node build
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
    return {"nodes": nodes, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime,
            "sys": usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "bytes": written, "out": out}


def run_localds(out: Path, nodes: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds for cloud-localds packing the seeds one by one, as a user would script it."""
    tool = shutil.which("cloud-localds")
    if not tool:
        return float("nan"), float("nan")
    target = out.parent / "localds"
    target.mkdir(exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for name in nodes:
        seed = out / name
        subprocess.run([tool, "--network-config", str(seed / "network-config"), str(target / f"{name}.iso"),
                        str(seed / "user-data"), str(seed / "meta-data")], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--skip-localds", action="store_true")
    parser.add_argument("--workdir", default=None, help="where to build (default: the system temp dir)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    with tempfile.TemporaryDirectory(prefix="k8sseed-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        print(f"{'nodes':>6} {'wall s':>8} {'CPU s':>7} {'(user':>7} {'sys)':>6} {'ms/node':>8} {'peak RSS MB':>12} "
              f"{'bytes written':>14}")
        results = []
        for n in sorted({max(1, args.nodes // 4), max(1, args.nodes // 2), args.nodes}):
            r = run_build(work, n)
            results.append(r)
            print(f"{n:>6} {r['wall']:>8.2f} {r['cpu']:>7.2f} {r['user']:>7.2f} {r['sys']:>6.2f} "
                  f"{1000 * r['wall'] / n:>8.2f} {r['rss_mb']:>12.1f} {r['bytes']:>14}")
        biggest = results[-1]
        for a, b in itertools.pairwise(results):
            marginal = 1000 * (b["wall"] - a["wall"]) / (b["nodes"] - a["nodes"])
            print(f"marginal cost {a['nodes']}->{b['nodes']} nodes: {marginal:.2f} ms/node "
                  "(about equal from step to step = linear; the rest is fixed start-up cost)")
        if biggest["sys"] > 0.5 * biggest["user"]:
            print(f"note: the kernel's file system work (sys {biggest['sys']:.2f} s) is more than half of k8sseed's "
                  f"own (user {biggest['user']:.2f} s): the disk under {work} decides this figure. An ext4 without a "
                  "journal scans past every inode deleted in the last minutes for each file it creates (the previous "
                  "run's output): run again later, or on another file system (--workdir)")
        goal = "met" if biggest["wall"] < 3 and biggest["rss_mb"] <= MEMORY_GOAL_MB else "NOT met"
        print(f"goal (under 3 s and {MEMORY_GOAL_MB} MB peak RSS for {args.nodes} nodes): {goal}")
        if not args.skip_localds:
            names = sorted(p.name for p in biggest["out"].iterdir() if (p / "user-data").is_file())
            wall, cpu = run_localds(biggest["out"], names)
            print(f"cloud-localds packing the same {len(names)} seeds: {wall:.2f} s wall, {cpu:.2f} s CPU")
            print(f"k8sseed's whole build is x{wall / biggest['wall']:.1f} faster by wall time and "
                  f"x{cpu / biggest['cpu']:.1f} by CPU time (goal: at least x{SPEEDUP_GOAL}; CPU time is the "
                  "steadier figure on a busy machine)")


if __name__ == "__main__":
    main()
