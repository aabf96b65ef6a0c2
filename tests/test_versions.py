"""Versions a profile may ask for: Kubernetes patches that exist, cri-dockerd releases and their sums per arch,
the external etcd each kubeadm accepts, and warnings that have ids, can be acknowledged, and stay silent for the
example profiles."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE_PROFILES, PROFILES, make_secret, run_cli

from k8sseed.errors import WARNING_IDS
from k8sseed.profile.schema_check import profile_schema
from k8sseed.versions import (
    CRI_DOCKERD_RELEASES,
    ETCD_DEFAULT,
    ETCD_RELEASES,
    VERSION_TABLE,
    canonical,
    cri_dockerd_docker_problem,
    etcd_version_tuple,
    kubeadm_etcd_problem,
    newest_known,
    newest_minor_taking_etcd,
    patch_beyond_table,
    release_problem,
)

REFERENCE = PROFILES / "reference.yaml"
AMD64_SUM = "cc7f181ce850130dc375515c54cd8a27e1e862252abc5b7eade7b4a03ddabd8e"
ARM64_SUM = "0ab930b6f7ab87697cd94c954d01e19fdd5b5d65810662effb957c5db49a55d4"


def profile_with(tmp_path: Path, *edits: tuple[str, str], data_edit=None) -> Path:
    text = REFERENCE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    if data_edit:
        data = yaml.safe_load(text)
        data_edit(data)
        text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


# -- the version table ------------------------------------------------------------------------------

def test_every_minor_from_1_24_to_1_36_knows_its_newest_patch():
    assert sorted(VERSION_TABLE) == [(1, m) for m in range(24, 37)]
    finals = {f.minor_text: f.newest for f in VERSION_TABLE.values() if f.final}
    assert finals == {"1.24": "1.24.17", "1.25": "1.25.16", "1.26": "1.26.15", "1.27": "1.27.16",
                      "1.28": "1.28.15", "1.29": "1.29.15", "1.30": "1.30.14", "1.31": "1.31.14"}
    assert newest_known() == VERSION_TABLE[(1, 36)].newest


# -- external etcd: kubeadm's minimum and k8sseed's default ---------------------------------------------

def test_the_default_etcd_passes_every_minors_kubeadm_minimum():
    for facts in VERSION_TABLE.values():
        assert kubeadm_etcd_problem(facts.newest, ETCD_DEFAULT) is None, facts.minor_text
        assert kubeadm_etcd_problem(f"{facts.minor_text}.0", ETCD_DEFAULT) is None, facts.minor_text


def test_the_default_etcd_is_the_newest_3_5_release_with_sums_for_both_archs():
    newest = max((v for v in ETCD_RELEASES if v.startswith("3.5.")), key=etcd_version_tuple)
    assert newest == ETCD_DEFAULT
    assert etcd_version_tuple(ETCD_DEFAULT) >= (3, 5, 26)  # etcd's only safe start for a later move to 3.6
    for version, sums in ETCD_RELEASES.items():
        assert set(sums) == {"amd64", "arm64"}, version
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in sums.values()), version
    assert len({s for sums in ETCD_RELEASES.values() for s in sums.values()}) == 2 * len(ETCD_RELEASES)


def test_kubeadm_minimums_are_the_ones_read_in_its_constants_and_never_fall():
    minimums = {f.minor_text: f.min_external_etcd for f in VERSION_TABLE.values()}
    assert minimums == {**dict.fromkeys(("1.24", "1.25", "1.26", "1.27"), "3.2.18"),
                        **dict.fromkeys(("1.28", "1.29", "1.30"), "3.4.13"),
                        **{f"1.{m}": "3.5.24" for m in range(31, 37)}}
    ordered = [etcd_version_tuple(f.min_external_etcd) for _, f in sorted(VERSION_TABLE.items())]
    assert ordered == sorted(ordered)


def _kubeadm_module_releases() -> list[Path]:
    """kubeadm's constants.go of the k8s.io/kubernetes releases in the local Go module cache, if any."""
    cache = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod") / "k8s.io"
    return sorted(cache.glob("kubernetes@v1.*/cmd/kubeadm/app/constants/constants.go"))


@pytest.mark.skipif(not _kubeadm_module_releases(), reason="no k8s.io/kubernetes release in the Go module cache")
def test_no_kubeadm_release_on_disk_asks_more_of_external_etcd_than_the_table():
    for constants in _kubeadm_module_releases():
        release = constants.parents[4].name.split("@v", 1)[1]
        found = re.search(r'MinExternalEtcdVersion = "([0-9.]+)(?:-[0-9]+)?"', constants.read_text())
        assert found, constants
        facts = VERSION_TABLE.get(tuple(int(p) for p in release.split(".")[:2]))
        if facts:
            assert etcd_version_tuple(facts.min_external_etcd) >= etcd_version_tuple(found.group(1)), release


def test_an_etcd_older_than_kubeadms_minimum_is_named_with_what_to_use_instead():
    problem = kubeadm_etcd_problem("1.33.11", "3.5.12")
    assert problem is not None
    assert problem.startswith("etcd 3.5.12 is older than 3.5.24, the oldest external etcd that kubeadm 1.33 ")
    assert f"use etcd {ETCD_DEFAULT}" in problem and "or Kubernetes 1.30 or older" in problem
    assert kubeadm_etcd_problem("1.33.11", "3.5.24") is None
    assert kubeadm_etcd_problem("1.33.11", "3.6.8") is None
    assert kubeadm_etcd_problem("1.30.14", "3.4.23") is None  # Debian 12's etcd-server
    assert kubeadm_etcd_problem("1.28.0", "3.4.12") is not None
    assert newest_minor_taking_etcd("3.4.23").minor_text == "1.30"
    assert newest_minor_taking_etcd("3.1.0") is None


@pytest.mark.parametrize("version", ["1.25.0", "1.25.6", "1.25.16", "v1.25.6", "1.36.0", "1.36.5", "1.24.17"])
def test_releases_that_exist_are_accepted(version):
    assert release_problem(version) is None and patch_beyond_table(version) is None


@pytest.mark.parametrize(("version", "words"), [
    ("1.25.99", "1.25 is end of life and its last release is 1.25.16"),
    ("1.31.15", "its last release is 1.31.14"),
    ("1.19.0", "not in k8sseed's version table"),
    ("1.37.0", "supported minors: 1.24 to 1.36"),
])
def test_releases_that_cannot_exist_are_refused(version, words):
    assert words in (release_problem(version) or "")


def test_leading_zeros_are_no_version():
    assert canonical("1.30.04") == "1.30.4" and canonical("v01.30.4") is None
    result = run_cli("validate", str(Path(__file__).parent / "profiles" / "bad" / "91-version-leading-zero.yaml"))
    assert result.returncode == 2 and "did you mean '1.30.4'?" in result.stderr


def test_leading_zero_hint_never_suggests_a_version_that_is_refused_too(tmp_path):
    profile = profile_with(tmp_path, ("kubernetesVersion: 1.25.6", 'kubernetesVersion: "1.25.099"'))
    result = run_cli("validate", str(profile))
    assert result.returncode == 2
    assert "did you mean" not in result.stderr
    assert "1.25.99 does not exist" in result.stderr


def test_a_patch_newer_than_the_table_is_a_warning_not_an_error(tmp_path):
    profile = profile_with(tmp_path, ("kubernetesVersion: 1.25.6", "kubernetesVersion: 1.36.99"),
                           ("mode: ipvs", "mode: nftables"))
    result = run_cli("validate", str(profile))
    assert result.returncode == 0, result.stderr
    assert "warning[kubernetes-patch-unknown]: Kubernetes 1.36.99 is newer than 1.36.5" in result.stderr


def test_the_reference_version_is_on_pkgs_k8s_io():
    """pkgs.k8s.io carries every release from v1.24.0 (kubernetes/website PR #44719): 1.25.6 installs."""
    data = yaml.safe_load(REFERENCE.read_text())
    assert data["cluster"]["kubernetesVersion"] == "1.25.6"
    assert min(VERSION_TABLE) >= (1, 24)


# -- cri-dockerd --------------------------------------------------------------------------------------

def test_the_version_table_only_picks_known_cri_dockerd_releases():
    assert {f.cri_dockerd for f in VERSION_TABLE.values()} <= set(CRI_DOCKERD_RELEASES)
    assert "0.3.19" not in CRI_DOCKERD_RELEASES


@pytest.mark.parametrize("family", ["debian", "ubuntu", "flatcar"])
@pytest.mark.parametrize("source", ["distro", "docker-ce"])
def test_the_version_table_picks_a_cri_dockerd_that_every_runtime_source_starts(family, source):
    """Debian 12's docker.io 20.10 speaks API 1.41, which cri-dockerd 0.4.0 refuses; Docker CE 29 refuses the
    API 1.43 client of cri-dockerd before 0.3.16. The table's choice must start against all of them."""
    for facts in VERSION_TABLE.values():
        assert cri_dockerd_docker_problem(facts.cri_dockerd, family, source, None) is None, facts.minor_text


@pytest.mark.parametrize(("cri_dockerd", "family", "source", "docker", "refused"), [
    ("0.4.0", "debian", "distro", None, True),
    ("0.4.1", "flatcar", "distro", None, True),
    ("0.4.0", "ubuntu", "distro", None, False),
    ("0.4.2", "debian", "distro", None, False),
    ("0.3.16", "debian", "distro", None, False),
    ("0.3.15", "ubuntu", "docker-ce", None, True),
    ("0.3.15", "ubuntu", "docker-ce", "5:28.5.2-1~ubuntu.24.04~noble", False),
    ("0.3.15", "ubuntu", "docker-ce", "29.1", True),
    ("0.3.16", "ubuntu", "docker-ce", None, False),
])
def test_cri_dockerd_and_docker_api_pairs(cri_dockerd, family, source, docker, refused):
    assert (cri_dockerd_docker_problem(cri_dockerd, family, source, docker) is not None) is refused


@pytest.mark.parametrize("version", ["0.3.99", "0.3.19", "0.5.0"])
def test_an_unknown_cri_dockerd_release_is_refused_with_the_known_list(tmp_path, version):
    profile = profile_with(tmp_path, ("    version: 0.3.16\n", f"    version: {version}\n"))
    result = run_cli("validate", str(profile))
    assert result.returncode == 2
    assert f"cri-dockerd {version} is not a release k8sseed knows of" in result.stderr
    assert "0.3.0-0.3.18, 0.3.20-0.3.26, 0.4.0-0.4.4" in result.stderr


def _node_env(out: Path, node: str) -> str:
    user = yaml.safe_load((out / node / "user-data").read_text())
    return next(f["content"] for f in user["write_files"] if f["path"] == "/etc/k8sseed/node.env")


def test_each_node_checks_cri_dockerd_against_its_own_arch_sum(tmp_path):
    def arm_worker(data):
        data["nodes"][-1]["arch"] = "arm64"
    profile = profile_with(tmp_path, data_edit=arm_worker)
    out = tmp_path / "out"
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    worker = yaml.safe_load(profile.read_text())["nodes"][-1]["name"]
    assert f"K8SSEED_CRI_DOCKERD_SHA256={ARM64_SUM}" in _node_env(out, worker)
    assert "cri-dockerd-0.3.16.arm64.tgz" in _node_env(out, worker)
    assert f"K8SSEED_CRI_DOCKERD_SHA256={AMD64_SUM}" in _node_env(out, "cp-1")


def test_a_plain_sum_serves_a_one_arch_cluster(tmp_path):
    def plain(data):
        data["runtime"]["criDockerd"]["sha256"] = AMD64_SUM
    profile = profile_with(tmp_path, data_edit=plain)
    out = tmp_path / "out"
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0 and result.stderr == ""
    assert f"K8SSEED_CRI_DOCKERD_SHA256={AMD64_SUM}" in _node_env(out, "worker-1")


def test_no_sum_at_all_is_a_warning_naming_the_release_and_the_archs_in_use(tmp_path):
    def none(data):
        data["runtime"]["criDockerd"] = {"version": "0.4.2"}  # no sum in the profile nor in k8sseed's table
        data["nodes"][0]["arch"] = "arm64"
    result = run_cli("validate", str(profile_with(tmp_path, data_edit=none)))
    assert result.returncode == 0
    assert "warning[cri-dockerd-unverified]" in result.stderr and "cri-dockerd 0.4.2 (amd64, arm64)" in result.stderr


# -- warnings: ids, acknowledgement, silence for the examples ---------------------------------------------

def test_the_schema_accepts_exactly_the_warning_ids_k8sseed_gives():
    assert profile_schema()["properties"]["acknowledge"]["items"]["enum"] == list(WARNING_IDS)


def test_every_warning_shows_its_id_and_an_acknowledged_one_is_silent(tmp_path):
    def noisy(data):
        del data["acknowledge"]
        data["runtime"]["criDockerd"] = {}  # 1.36's cri-dockerd, 0.4.3: no sum in k8sseed's table yet
        data["os"]["users"] = []
        data["cluster"]["kubernetesVersion"] = "1.36.9"
        data["cluster"]["bootstrapTokenTTL"] = "0"  # a standing credential: said, unless acknowledged
    profile = profile_with(tmp_path, data_edit=noisy)
    result = run_cli("validate", str(profile))
    assert result.returncode == 0, result.stderr
    ids = re.findall(r"^warning\[([a-z0-9-]+)\]: ", result.stderr, re.M)
    assert len(ids) == len(result.stderr.splitlines()), result.stderr
    assert sorted(ids) == ["calicoctl-unverified", "cri-dockerd-unverified", "ipvs-deprecated",
                           "kubernetes-patch-unknown", "no-login-user", "token-never-expires"]
    text = profile.read_text()
    profile.write_text(f"acknowledge: [{', '.join(ids)}]\n" + text)
    quiet = run_cli("validate", str(profile))
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("profile", EXAMPLE_PROFILES, ids=lambda p: p.stem)
def test_every_example_profile_builds_without_a_word_on_stderr(tmp_path, profile):
    result = run_cli("build", str(profile), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
