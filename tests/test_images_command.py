"""`k8sseed images PROFILE`: every image the nodes pull, as upstream names it and as the mirrors rewrite it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import NOCLOUD_PROFILES, PROFILES, REPO, run_cli
from realk8s_support import KUBERNETES_RELEASES, build_at_release, kubeadm

REFERENCE = PROFILES / "reference.yaml"

# `kubeadm config images list --kubernetes-version v1.25.6`: pause 3.8, etcd 3.5.6-0, CoreDNS v1.9.3.
KUBEADM_1_25_6 = [
    "registry.k8s.io/kube-apiserver:v1.25.6",
    "registry.k8s.io/kube-controller-manager:v1.25.6",
    "registry.k8s.io/kube-scheduler:v1.25.6",
    "registry.k8s.io/kube-proxy:v1.25.6",
    "registry.k8s.io/coredns/coredns:v1.9.3",
    "registry.k8s.io/pause:3.8",
    "registry.k8s.io/etcd:3.5.6-0",
]
CALICO_3_25_2 = [
    "quay.io/tigera/operator:v1.29.6",
    *(f"docker.io/calico/{name}:v3.25.2" for name in (
        "node", "cni", "kube-controllers", "typha", "apiserver", "csi", "node-driver-registrar",
        "pod2daemon-flexvol")),
]
PURELB_0_16_6 = ["ghcr.io/purelb/purelb/allocator:v0.16.6", "ghcr.io/purelb/purelb/lbnodeagent:v0.16.6"]


def _images(profile: Path, *flags: str) -> list[str]:
    result = run_cli("images", str(profile), *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _pairs(profile: Path) -> dict[str, str]:
    return dict(line.split("\t") for line in _images(profile))


def _variant(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(REFERENCE.read_text())
    change(data)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_reference_profile_lists_exactly_kubeadm_1_25_calico_and_purelb_images():
    assert _images(REFERENCE, "--upstream") == KUBEADM_1_25_6 + CALICO_3_25_2 + PURELB_0_16_6
    # No mirror in the reference profile: the nodes pull the upstream names.
    assert all(upstream == pulled for upstream, pulled in _pairs(REFERENCE).items())


def test_a_1_36_profile_lists_kubeadm_1_36_tags(tmp_path):
    def v136(data):
        data["cluster"]["kubernetesVersion"] = "1.36.5"
        data["kubeProxy"] = {"mode": "nftables"}
        data["runtime"]["criDockerd"] = {}
    upstream = _images(_variant(tmp_path, v136), "--upstream")
    # cmd/kubeadm/app/constants/constants.go at v1.36.5: PauseVersion 3.10.2, etcd 3.6.8-0, CoreDNS v1.14.2.
    assert upstream[:7] == [
        "registry.k8s.io/kube-apiserver:v1.36.5",
        "registry.k8s.io/kube-controller-manager:v1.36.5",
        "registry.k8s.io/kube-scheduler:v1.36.5",
        "registry.k8s.io/kube-proxy:v1.36.5",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.6.8-0",
    ]
    # Calico 3.32.1 (the table's choice for 1.36): components from quay.io since Calico 3.30.
    assert "quay.io/tigera/operator:v1.42.3" in upstream
    assert "quay.io/calico/node:v3.32.1" in upstream


def test_mirrored_names_follow_image_repository_and_kubeadms_coredns_path(tmp_path):
    def harbor(data):
        data["mirrors"]["imageRepository"] = "harbor.example.com:5000/k8s"
    pairs = _pairs(_variant(tmp_path, harbor))
    assert pairs["registry.k8s.io/kube-apiserver:v1.25.6"] == "harbor.example.com:5000/k8s/kube-apiserver:v1.25.6"
    assert pairs["registry.k8s.io/etcd:3.5.6-0"] == "harbor.example.com:5000/k8s/etcd:3.5.6-0"
    # kubeadm keeps coredns/coredns only under its default repository; elsewhere it pulls <repo>/coredns.
    assert pairs["registry.k8s.io/coredns/coredns:v1.9.3"] == "harbor.example.com:5000/k8s/coredns:v1.9.3"
    assert _images(_variant(tmp_path, harbor), "--mirrored")[:7] == [
        pulled for pulled in pairs.values() if pulled.startswith("harbor.example.com:5000/k8s/")]


def test_pause_is_the_one_cri_dockerd_is_given(tmp_path):
    from k8sseed.plan import pause_image
    from k8sseed.profile import load_profile
    from k8sseed.versions import facts_for

    def harbor(data):
        data["mirrors"]["imageRepository"] = "harbor.example.com/k8s"
    path = _variant(tmp_path, harbor)
    profile = load_profile(path).profile
    assert _pairs(path)["registry.k8s.io/pause:3.8"] == pause_image(profile, facts_for("1.25.6")) \
        == "harbor.example.com/k8s/pause:3.8"


def test_calico_and_purelb_follow_the_rewrites_the_nodes_do(tmp_path):
    def mirrors(data):
        data["mirrors"].update({
            "calicoRegistry": "harbor.example.com/calico-mirror",
            "imageRegistries": {"quay.io": "harbor.example.com/quay.io", "ghcr.io": "harbor.example.com/ghcr.io"},
        })
    pairs = _pairs(_variant(tmp_path, mirrors))
    # The operator manifest is rewritten with imageRegistries; its components follow Installation spec.registry.
    assert pairs["quay.io/tigera/operator:v1.29.6"] == "harbor.example.com/quay.io/tigera/operator:v1.29.6"
    assert pairs["docker.io/calico/node:v3.25.2"] == "harbor.example.com/calico-mirror/calico/node:v3.25.2"
    assert pairs["ghcr.io/purelb/purelb/allocator:v0.16.6"] == \
        "harbor.example.com/ghcr.io/purelb/purelb/allocator:v0.16.6"


def test_docker_hub_images_go_through_the_docker_hub_mirror(tmp_path):
    def hub(data):
        data["mirrors"]["dockerHubMirrors"] = ["https://hub-mirror.example.com"]
    pairs = _pairs(_variant(tmp_path, hub))
    assert pairs["docker.io/calico/cni:v3.25.2"] == "hub-mirror.example.com/calico/cni:v3.25.2"
    assert pairs["quay.io/tigera/operator:v1.29.6"] == "quay.io/tigera/operator:v1.29.6"


def test_external_etcd_drops_the_etcd_image():
    upstream = _images(PROFILES / "external-etcd.yaml", "--upstream")
    assert not [image for image in upstream if "/etcd:" in image]
    assert "registry.k8s.io/kube-apiserver:v1.33.11" in upstream


def test_purelb_disabled_drops_purelb(tmp_path):
    def no_purelb(data):
        data["purelb"] = {"enabled": False}
    upstream = _images(_variant(tmp_path, no_purelb), "--upstream")
    assert upstream == KUBEADM_1_25_6 + CALICO_3_25_2


def test_a_bad_profile_gets_file_line_messages_and_exit_2():
    bad = REPO / "tests" / "profiles" / "bad" / "01-ip-octet-300.yaml"
    result = run_cli("images", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{bad}:") and "Traceback" not in result.stderr


def test_one_column_at_a_time():
    result = run_cli("images", str(REFERENCE), "--mirrored", "--upstream")
    assert result.returncode == 2
    assert "give one of them" in result.stderr


def test_an_unknown_calico_release_is_reported_and_fails(tmp_path):
    def calico(data):
        data["calico"]["version"] = "3.24.9"
    result = run_cli("images", str(_variant(tmp_path, calico)))
    assert result.returncode == 1
    assert "docker.io/calico/node:v3.24.9" in result.stdout
    assert "the Tigera operator image of Calico 3.24.9" in result.stderr


def test_etcd_and_coredns_follow_the_patch_release():
    from k8sseed.versions import facts_for

    # kubeadm config images list of those releases (minikube's generated table of them).
    assert [facts_for(f"1.25.{p}").etcd_image_for(p) for p in (3, 4, 6, 16)] == \
        ["3.5.4-0", "3.5.5-0", "3.5.6-0", "3.5.9-0"]
    assert [facts_for(f"1.30.{p}").coredns_for(p) for p in (4, 5)] == ["v1.11.1", "v1.11.3"]


REAL_CASES = [(release, profile) for release in KUBERNETES_RELEASES for profile in NOCLOUD_PROFILES]


@pytest.mark.realk8s
@pytest.mark.parametrize(("release", "profile"), REAL_CASES, ids=[f"{r}-{p.stem}" for r, p in REAL_CASES])
def test_real_kubeadm_pulls_what_the_list_says(release: str, profile: Path, tmp_path: Path):
    """`kubeadm config images list` on the init node's own configuration (imageRepository, external etcd) gives
    the mirrored kubeadm images of `k8sseed images`, in kubeadm's order."""
    binary = kubeadm(release)
    out = build_at_release(release, profile, tmp_path)
    edited = tmp_path / profile.name
    init = next(d for d in sorted(out.iterdir()) if (d / "user-data").is_file()
                and "/etc/k8sseed/kubeadm-init.yaml" in (d / "user-data").read_text())
    config = tmp_path / "kubeadm-init.yaml"
    config.write_text(next(f["content"] for f in yaml.safe_load((init / "user-data").read_text())["write_files"]
                           if f["path"] == "/etc/k8sseed/kubeadm-init.yaml"))
    real = subprocess.run([str(binary), "config", "images", "list", "--config", str(config)],
                          capture_output=True, text=True)
    assert real.returncode == 0, real.stderr
    listed = _images(edited, "--mirrored")
    expected = real.stdout.split()
    assert listed[:len(expected)] == expected
    kubeadms = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause")
    assert not [image for image in listed[len(expected):] if image.rsplit("/", 1)[-1].split(":")[0] in kubeadms]
