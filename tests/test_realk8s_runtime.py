"""The container runtime of the reference design, for real: cri-dockerd built from its Go module against Debian
12's own dockerd (docker.io 20.10, API 1.41), the runtime `runtime.docker.source: distro` gives a Debian node.

Stand-ins could not show that cri-dockerd 0.4.0 refuses that Docker: these tests start the real pair. The
version table's cri-dockerd must come up and answer the CRI; 0.4.0 must fail the way the profile check says.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from realk8s_support import debian_dockerd, folder_of, real_bin, stop

from k8sseed.versions import VERSION_TABLE, cri_dockerd_docker_problem

pytestmark = [pytest.mark.realk8s, pytest.mark.netns]


def _start_cri_dockerd(binary: Path, docker_socket: Path, work: Path) -> tuple[subprocess.Popen, Path, Path]:
    socket = docker_socket.parent / "cri-dockerd.sock"  # the short folder: socket paths hold 107 bytes
    log = work / "cri-dockerd.log"
    process = subprocess.Popen(
        [str(binary), "--docker-endpoint", f"unix://{docker_socket}",
         "--container-runtime-endpoint", f"unix://{socket}",
         "--cri-dockerd-root-directory", str(work / "cri-dockerd-root"),
         "--network-plugin", "cni", "--cni-conf-dir", str(work / "cni-conf"), "--cni-bin-dir", str(work / "cni-bin"),
         "--cni-cache-dir", str(work / "cni-cache"), "--pod-infra-container-image", "registry.k8s.io/pause:3.10.2"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    return process, socket, log


def _crictl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    crictl = real_bin(folder_of("cri-tools-"), "crictl")
    return subprocess.run([str(crictl), "--runtime-endpoint", f"unix://{socket}", "--timeout", "10s", *args],
                          capture_output=True, text=True)


def test_the_table_cri_dockerd_starts_against_debian_12_docker_and_answers_the_cri(tmp_path: Path):
    newest = VERSION_TABLE[max(VERSION_TABLE)].cri_dockerd
    assert cri_dockerd_docker_problem(newest, "debian", "distro", None) is None
    binary = real_bin(f"cri-dockerd-{newest}", "cri-dockerd")
    with debian_dockerd(tmp_path, "k8sseed-cri") as dockerd:
        process, socket, log = _start_cri_dockerd(binary, dockerd.socket, tmp_path)
        try:
            deadline = time.monotonic() + 60
            version = _crictl(socket, "version")
            while version.returncode != 0 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                version = _crictl(socket, "version")
            assert version.returncode == 0, f"crictl version: {version.stderr}\ncri-dockerd log:\n{log.read_text()}"
            assert "RuntimeName:  docker" in version.stdout
            assert "RuntimeVersion:  20.10" in version.stdout, version.stdout
            assert "RuntimeApiVersion:  v1" in version.stdout
            info = _crictl(socket, "info")
            assert info.returncode == 0, info.stderr
            assert '"RuntimeReady"' in info.stdout and '"status": true' in info.stdout, info.stdout
        finally:
            stop(process)


def test_cri_dockerd_0_4_0_refuses_debian_12_docker_as_the_profile_check_says(tmp_path: Path):
    assert cri_dockerd_docker_problem("0.4.0", "debian", "distro", None) is not None
    binary = real_bin("cri-dockerd-0.4.0", "cri-dockerd")
    with debian_dockerd(tmp_path, "k8sseed-cri040") as dockerd:
        process, _, log = _start_cri_dockerd(binary, dockerd.socket, tmp_path)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            stop(process)
            pytest.fail(f"cri-dockerd 0.4.0 kept running against Docker 20.10:\n{log.read_text()}")
        assert process.returncode != 0
        assert "docker API version is older than 1.42.0" in log.read_text(), log.read_text()
