"""Build and write every node's seed, in worker processes when the rack is large enough to gain from it.

Each worker is forked from the build after the plan exists, so it inherits the plan instead of receiving it,
builds and writes its share of the nodes into the same temporary output directory, and sends back only names
and digests. The output does not depend on the number of workers (tests hold it byte for byte).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.seed import build_ignition, build_seed
from k8sseed.writers.seed_files import WrittenSeed, pack_seed, write_ignition, write_packed_seed

MIN_NODES_PER_WORKER = 50  # below this, starting a process costs more than it saves
_CHUNKS_PER_WORKER = 8  # small chunks: the workers finish together; a failure stops the rest early
_PR_SET_PDEATHSIG = 1


def default_jobs() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(jobs: int | None, nodes: int) -> int:
    """`jobs` as asked (None: one per CPU, when there are enough nodes to share), never more than the nodes."""
    if jobs is None:
        jobs = min(default_jobs(), nodes // MIN_NODES_PER_WORKER)
    return max(1, min(jobs, nodes))


CLOUD_INIT, IGNITION = "cloud-init", "ignition"
FORMATS = {"cloud-init": (CLOUD_INIT,), "ignition": (IGNITION,), "all": (CLOUD_INIT, IGNITION)}


def _build_and_write(plan: ClusterPlan, node: NodePlan, out: Path, epoch: int,
                     carriers: tuple[str, ...] = (CLOUD_INIT,)) -> WrittenSeed:
    seed = write_packed_seed(pack_seed(build_seed(plan, node), epoch), out, epoch) if CLOUD_INIT in carriers else None
    if IGNITION in carriers:
        return write_ignition(node.name, build_ignition(plan, node), out, epoch, seed)
    assert seed is not None
    return seed


# Set in the parent just before the workers are forked; each worker reads its copy.
_JOB: tuple[ClusterPlan, Path, int, tuple[str, ...]] | None = None


def _start_worker(parent: int) -> None:
    """A worker never outlives the build (a killed build must not keep writing) and leaves Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the build died before the line above took effect
        os._exit(1)


def _write_chunk(first: int, stop: int) -> list[WrittenSeed]:
    assert _JOB is not None
    plan, out, epoch, carriers = _JOB
    return [_build_and_write(plan, plan.nodes[i], out, epoch, carriers) for i in range(first, stop)]


def write_all_seeds(plan: ClusterPlan, out: Path, epoch: int, jobs: int | None = None,
                    carriers: tuple[str, ...] = (CLOUD_INIT,)) -> list[WrittenSeed]:
    """Every node's seed written under `out`, in plan order; `jobs` worker processes (None: automatic);
    `carriers`: NoCloud seeds (cloud-init), Ignition configs, or both."""
    global _JOB
    count = len(plan.nodes)
    workers = worker_count(jobs, count)
    if workers == 1:
        return [_build_and_write(plan, node, out, epoch, carriers) for node in plan.nodes]
    size = -(-count // (workers * _CHUNKS_PER_WORKER))
    bounds = [(first, min(first + size, count)) for first in range(0, count, size)]
    _JOB = (plan, out, epoch, carriers)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_start_worker, initargs=(os.getpid(),))
        try:
            futures = [pool.submit(_write_chunk, first, stop) for first, stop in bounds]
            written = [seed for future in futures for seed in future.result()]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the running chunks end; nothing new starts
            raise
        pool.shutdown(wait=True)
        return written
    finally:
        _JOB = None
