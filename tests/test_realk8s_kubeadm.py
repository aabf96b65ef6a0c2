"""Real kubeadm, built from k8s.io/kubernetes by `make real-k8s`, reads every kubeadm configuration the seeds carry.

Every example profile is rebuilt at each Kubernetes release tests/realk8s builds (the newest minors of the version
table), and each node's kubeadm file goes through `kubeadm config validate`: the decoder kubeadm init and join
use, strict about unknown fields and about the API version of the release. The images kubeadm will pull are read
from the same file with `kubeadm config images list`, and the sandbox image cri-dockerd is started with must be
kubeadm's pause: kubeadm 1.36 moved to pause 3.10.2, which a stand-in could not tell us.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import NOCLOUD_PROFILES, node_dirs
from realk8s_support import KUBERNETES_RELEASES, build_at_release, kubeadm

pytestmark = pytest.mark.realk8s

# Each release with every example profile whose nodes have a NoCloud rendering (Flatcar ones with --format all).
CASES = [(release, profile) for release in KUBERNETES_RELEASES for profile in NOCLOUD_PROFILES]


def _kubeadm_files(seed: Path, work: Path) -> list[Path]:
    files = []
    for entry in yaml.safe_load((seed / "user-data").read_text())["write_files"]:
        if entry["path"].startswith("/etc/k8sseed/kubeadm-"):
            path = work / f"{seed.name}-{Path(entry['path']).name}"
            path.write_text(entry["content"])
            files.append(path)
    return files


@pytest.mark.parametrize(("release", "profile"), CASES, ids=[f"{r}-{p.stem}" for r, p in CASES])
def test_real_kubeadm_accepts_every_nodes_configuration(release: str, profile: Path, tmp_path: Path):
    binary = kubeadm(release)
    out = build_at_release(release, profile, tmp_path)
    checked = 0
    for seed in node_dirs(out):
        for config in _kubeadm_files(seed, tmp_path):
            result = subprocess.run([str(binary), "config", "validate", "--config", str(config)],
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"{seed.name} {config.name}: {result.stdout}{result.stderr}"
            # kubeadm only warns about unknown or duplicate fields and deprecated APIs, and carries on.
            for trouble in ("strict decoding error", "unknown field", "deprecated", "duplicate field"):
                assert trouble not in result.stderr, f"{seed.name} {config.name}: {result.stderr}"
            checked += 1
    assert checked, f"no kubeadm configuration in {out}"


@pytest.mark.parametrize("release", KUBERNETES_RELEASES)
def test_cri_dockerd_sandbox_image_is_the_pause_kubeadm_pulls(release: str, tmp_path: Path):
    binary = kubeadm(release)
    profile = next(p for p in NOCLOUD_PROFILES if p.stem == "current")
    out = build_at_release(release, profile, tmp_path)
    init_seed = next(s for s in node_dirs(out) if any(f.name.endswith("kubeadm-init.yaml")
                                                       for f in _kubeadm_files(s, tmp_path)))
    config = tmp_path / f"{init_seed.name}-kubeadm-init.yaml"
    listed = subprocess.run([str(binary), "config", "images", "list", "--config", str(config)],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    pause = next(line for line in listed.stdout.split() if re.search(r"/pause:[0-9.]+$", line))
    written = {e["path"]: e["content"] for e in yaml.safe_load((init_seed / "user-data").read_text())["write_files"]}
    sandbox = re.search(r"--pod-infra-container-image=(\S+)", written["/etc/systemd/system/cri-docker.service"])
    assert sandbox and sandbox.group(1) == pause, (
        f"kubeadm {release} pulls {pause}, but cri-dockerd is started with {sandbox and sandbox.group(1)}")
