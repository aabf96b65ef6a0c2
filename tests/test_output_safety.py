"""OUT is replaced atomically, survives SIGKILL at any point, and bad disks give clean errors."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import K8SSEED, PROFILES, make_secret, run_cli


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_out_is_old_or_new_never_a_mix_when_the_build_is_killed(tmp_path):
    secret = make_secret(tmp_path)
    big = tmp_path / "big.yaml"
    lines = (PROFILES / "single-node.yaml").read_text().rstrip("\n").split("\n")
    extra = [f'  - {{name: w{i}, role: worker, ip: 192.168.50.{100 + i}/24, mac: "52:54:00:aa:00:{i:02x}"}}'
             for i in range(120)]
    big.write_text("\n".join(lines + extra) + "\n")
    reference_out, big_out = tmp_path / "ref-expected", tmp_path / "big-expected"
    assert run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(reference_out), "--secret", str(secret)
                   ).returncode == 0
    assert run_cli("build", str(big), "-o", str(big_out), "--secret", str(secret)).returncode == 0
    old, new = _snapshot(reference_out), _snapshot(big_out)
    out = tmp_path / "out"
    shutil.copytree(reference_out, out)
    rng = random.Random(1234)
    start = time.perf_counter()
    subprocess.run([K8SSEED, "build", str(big), "-o", str(tmp_path / "timing"), "--secret", str(secret)], check=True,
                   capture_output=True)
    full = time.perf_counter() - start
    outcomes = {"old": 0, "new": 0}
    for _ in range(12):
        proc = subprocess.Popen([K8SSEED, "build", str(big), "-o", str(out), "--secret", str(secret)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, full * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _snapshot(out)
        assert now in (old, new), "OUT holds a mix of two builds"
        outcomes["old" if now == old else "new"] += 1
        if now == new:
            shutil.rmtree(out)
            shutil.copytree(reference_out, out)
    # Leftovers of killed builds are cleaned up by the next build.
    assert run_cli("build", str(big), "-o", str(out), "--secret", str(secret)).returncode == 0
    assert _snapshot(out) == new
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.k8sseed-")] == []
    print(f"killed builds: {outcomes}")


def _in_private_mount(tmp_path: Path, options: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a private tmpfs")
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = f'mount -t tmpfs -o {options} k8sseed-test "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(mount),
                           *command], capture_output=True, text=True)


@pytest.mark.parametrize(("mount_options", "error"), [("size=48k", "No space left on device"),
                                                     ("ro", "Read-only file system")], ids=["full", "read-only"])
def test_a_full_or_read_only_disk_gives_a_clean_error(tmp_path, mount_options, error):
    secret = make_secret(tmp_path)
    result = _in_private_mount(tmp_path, mount_options, [K8SSEED, "build", str(PROFILES / "single-node.yaml"), "-o",
                                                         str(tmp_path / "mnt" / "out"), "--secret", str(secret)])
    assert result.returncode == 1, result.stderr
    assert error in result.stderr
    assert "Traceback" not in result.stderr
