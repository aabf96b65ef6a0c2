"""Seeds built by several processes: the same bytes as one process, and no worker outlives or hides a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import K8SSEED, PROFILES, make_secret, run_cli

from k8sseed.seed_workers import MIN_NODES_PER_WORKER, worker_count


def _big_profile(tmp_path: Path, workers: int) -> Path:
    lines = (PROFILES / "single-node.yaml").read_text().rstrip("\n").split("\n")
    extra = [f'  - {{name: w{i}, role: worker, ip: 192.168.50.{100 + i}/24, mac: "52:54:00:bb:00:{i:02x}"}}'
             for i in range(workers)]
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(lines + extra) + "\n")
    return path


def _snapshot(out: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mode, int(p.stat().st_mtime))
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_worker_count_is_one_per_cpu_only_for_large_profiles():
    assert worker_count(None, MIN_NODES_PER_WORKER - 1) == 1
    assert worker_count(None, 10_000) == len(os.sched_getaffinity(0))
    assert worker_count(3, 2) == 2
    assert worker_count(1, 10_000) == 1


def test_any_number_of_workers_writes_the_same_output_byte_for_byte(tmp_path):
    secret = make_secret(tmp_path)
    profile = _big_profile(tmp_path, 140)
    outs = {}
    for jobs in ("1", "2", "5"):
        out = tmp_path / f"out-{jobs}"
        result = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret), "--jobs", jobs)
        assert result.returncode == 0, result.stderr
        outs[jobs] = _snapshot(out)
    assert len(outs["1"]) == 141 * 4 + 1
    assert outs["1"] == outs["2"] == outs["5"]


def test_a_failing_worker_fails_the_build_cleanly(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    secret = make_secret(tmp_path)
    profile = _big_profile(tmp_path, 80)
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = ('mount -t tmpfs -o size=3m k8sseed-test "$1" && '
              f'{K8SSEED} build "$2" -o "$1/out" --secret "$3" --jobs 2; rc=$?; ls -A "$1"; exit $rc')
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             str(mount), str(profile), str(secret)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "", f"left behind: {result.stdout}"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def _start_build_with_workers(tmp_path: Path, session: bool) -> tuple[subprocess.Popen[str], set[int], Path]:
    secret = make_secret(tmp_path)
    profile = _big_profile(tmp_path, 140)
    out = tmp_path / "out"
    # SIGINT at its default, as under a terminal: a test run started in the background by a non-interactive
    # shell inherits it ignored, and Python then leaves it ignored (the build would rightly not stop).
    proc = subprocess.Popen([K8SSEED, "build", str(profile), "-o", str(out), "--secret", str(secret), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=session,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        workers = _children(proc.pid)
        time.sleep(0.02)
    if len(workers) < 2:
        proc.kill()
        proc.wait()
        pytest.fail("the build never had two worker processes")
    return proc, workers, out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_die_with_a_killed_build_and_write_nothing_after_it(tmp_path):
    proc, workers, out = _start_build_with_workers(tmp_path, session=False)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the killed build"
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.k8sseed-")]
    before = {str(p) for d in leftovers for p in d.rglob("*")}
    time.sleep(0.5)
    assert {str(p) for d in leftovers for p in d.rglob("*")} == before, "something still writes"


def test_ctrl_c_stops_the_build_and_its_workers_with_one_message(tmp_path):
    # The workers live for a fraction of a second: a build that finished before the signal landed (exit 0,
    # nothing interrupted) is tried again in a fresh directory.
    for attempt in range(5):
        work = tmp_path / f"try-{attempt}"
        work.mkdir()
        proc, workers, out = _start_build_with_workers(work, session=True)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group gets it
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode != 0:
            break
    tmp_path = work
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert not [pid for pid in workers if _alive(pid)]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if ".k8sseed-" in p.name] == []
