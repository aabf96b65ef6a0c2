"""Where the real binaries of `make real-k8s` are, and a Debian dockerd to run them against.

The binaries are built from their Go modules by tests/realk8s/build.sh into a cache outside the repository.
Without them the realk8s tests skip, naming the command that builds them; under `make test-real`
(K8SSEED_REQUIRE_REAL=1) a missing binary is a failure instead.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REALK8S = Path(__file__).resolve().parent / "realk8s"
CACHE = Path(os.environ.get("K8SSEED_REAL_CACHE", "/var/cache/k8sseed-real"))
# The Kubernetes releases tests/realk8s builds, newest first: ('1.36.5', '1.35.4').
KUBERNETES_RELEASES = tuple(sorted((d.name.removeprefix("kubernetes-") for d in REALK8S.glob("kubernetes-*")
                                    if (d / "go.mod").is_file()),
                                   key=lambda v: tuple(int(p) for p in v.split(".")), reverse=True))


def folder_of(prefix: str) -> str:
    """The one module folder whose name starts with prefix (e.g. 'cri-tools-')."""
    found = sorted(d.name for d in REALK8S.glob(f"{prefix}*") if (d / "go.mod").is_file())
    assert len(found) == 1, f"expected one tests/realk8s/{prefix}* folder, found {found}"
    return found[0]


def real_bin(folder: str, name: str) -> Path:
    """A built binary, or a skip (a failure under make test-real) that says how to build it."""
    path = CACHE / folder / "bin" / name
    if not os.access(path, os.X_OK):
        reason = f"{path} is not built: run `make real-k8s` (tests/realk8s/build.sh {folder})"
        if os.environ.get("K8SSEED_REQUIRE_REAL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def kubeadm(release: str) -> Path:
    return real_bin(f"kubernetes-{release}", "kubeadm")


def build_at_release(release: str, profile: Path, work: Path) -> Path:
    """An example profile with cluster.kubernetesVersion set to release, built with a fresh secret into work/out
    (Flatcar profiles with --format all, so that their nodes have the NoCloud rendering too)."""
    data = yaml.safe_load(profile.read_text())
    data["cluster"]["kubernetesVersion"] = release
    edited = work / profile.name
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    secret = work / "cluster.secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    secret.chmod(0o600)
    out = work / "out"
    extra = ["--format", "all"] if data["os"].get("family") == "flatcar" else []
    result = subprocess.run([str(Path(sys.executable).parent / "k8sseed"), "build", str(edited), "-o", str(out),
                             "--secret", str(secret), *extra], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@dataclass(frozen=True)
class Dockerd:
    socket: Path
    root: Path


def _dockerd_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run dockerd"
    for tool in ("dockerd", "containerd", "runc", "ip", "nsenter"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install docker.io: Debian 12's Docker 20.10, the distro runtime)"
    return None


@contextmanager
def debian_dockerd(work: Path, netns: str) -> Iterator[Dockerd]:
    """Debian's own dockerd (docker.io 20.10, API 1.41), in a network namespace the test creates, with its data,
    state and socket under work; no bridge and no iptables rules, so the host is left as it was.

    nsenter joins only the namespace's network: `ip netns exec` would also remount /sys, and dockerd then finds
    no cgroup hierarchy."""
    reason = _dockerd_unavailable()
    if reason:
        if os.environ.get("K8SSEED_REQUIRE_REAL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    process = None
    # Unix socket paths hold 107 bytes: containerd's socket under pytest's deep temporary folder is longer, and
    # dockerd then times out waiting for its containerd. Sockets and state go to a short folder of their own.
    short = Path(tempfile.mkdtemp(prefix="k8sd-", dir="/tmp"))
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        socket = short / "docker.sock"
        log = (work / "dockerd.log").open("w")
        process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "dockerd", "--host", f"unix://{socket}",
             "--data-root", str(short / "data"), "--exec-root", str(short / "exec"),
             "--pidfile", str(short / "docker.pid"), "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not _answers(socket):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not come up:\n{(work / 'dockerd.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield Dockerd(socket, short)
    finally:
        if process is not None:
            stop(process)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        # dockerd bind-mounts its data root onto itself and leaves it mounted when it fails to start.
        for mount in sorted(_mounts_under(short), reverse=True):
            subprocess.run(["umount", "--lazy", mount], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(short)], capture_output=True)


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(f"{folder}/")]


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    probe = subprocess.run(["curl", "-sf", "--unix-socket", str(socket), "http://docker/_ping"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout == "OK"


def stop(process: subprocess.Popen, limit: float = 20.0) -> None:
    """End a process this test started (by its PID), politely first."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
