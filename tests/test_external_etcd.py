"""cluster.topology external-etcd, from the built seeds: which node holds which key, what kubeadm is told,
how etcd is run, and the warnings of the lab-sized variants. The real etcd runs in test_external_etcd_lab.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, node_dirs, require_tool, run_cli
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from k8sseed.versions import ETCD_DEFAULT, ETCD_RELEASES, VERSION_TABLE, kubeadm_etcd_problem

PROFILE = PROFILES / "external-etcd.yaml"
ETCDS, CPS, WORKERS = ("etcd-1", "etcd-2", "etcd-3"), ("cp-1", "cp-2", "cp-3"), ("worker-1", "worker-2")


def _files(seed: Path) -> dict[str, dict]:
    return {f["path"]: f for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}


def _keys(seed: Path) -> set[str]:
    return {path for path, f in _files(seed).items() if "PRIVATE KEY" in f["content"]}


@pytest.fixture(scope="module")
def out(built) -> Path:
    return built["external-etcd"]


def test_each_role_carries_exactly_its_own_private_keys(out):
    etcd_keys = {"/etc/k8sseed/etcd/pki/server.key", "/etc/k8sseed/etcd/pki/peer.key"}
    cp_keys = {"/etc/k8sseed/pki/ca.key", "/etc/k8sseed/pki/front-proxy-ca.key", "/etc/k8sseed/pki/sa.key",
               "/etc/k8sseed/pki/apiserver-etcd-client.key"}
    for name in ETCDS:
        assert _keys(out / name) == etcd_keys, name
    for name in CPS:
        assert _keys(out / name) == cp_keys, name  # no etcd CA key: the build issued the client certificate
    for name in WORKERS:
        assert _keys(out / name) == set(), name


def test_no_seed_holds_the_etcd_ca_key_and_each_leaf_key_is_on_one_node_only(out):
    seen: dict[str, str] = {}
    for seed in node_dirs(out):
        text = (seed / "user-data").read_text()
        assert "/etc/k8sseed/pki/etcd/ca.key" not in text
        for path, f in _files(seed).items():
            if "PRIVATE KEY" in f["content"] and "ca.key" not in path and "sa.key" not in path:
                assert f["content"] not in seen, f"{seed.name}:{path} repeats {seen.get(f['content'])}"
                seen[f["content"]] = f"{seed.name}:{path}"
                assert f["permissions"] == "0600"


def test_etcd_certificates_chain_to_the_etcd_ca_with_the_members_names_and_addresses(out):
    ca = x509.load_pem_x509_certificate(_files(out / "etcd-1")["/etc/k8sseed/etcd/pki/ca.crt"]["content"].encode())
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for name, ip in zip(ETCDS, ("10.50.0.31", "10.50.0.32", "10.50.0.33"), strict=True):
        files = _files(out / name)
        assert files["/etc/k8sseed/etcd/pki/ca.crt"]["content"] == ca.public_bytes(Encoding.PEM).decode()
        for stem in ("server", "peer"):
            cert = x509.load_pem_x509_certificate(files[f"/etc/k8sseed/etcd/pki/{stem}.crt"]["content"].encode())
            assert cert.issuer == ca.subject
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert name in sans.get_values_for_type(x509.DNSName)
            assert ip in {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
            usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    client = x509.load_pem_x509_certificate(
        _files(out / "cp-2")["/etc/k8sseed/pki/apiserver-etcd-client.crt"]["content"].encode())
    assert set(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH}
    public.verify(client.signature, client.tbs_certificate_bytes, ec.ECDSA(client.signature_hash_algorithm))


def test_control_planes_point_kubeadm_at_the_etcd_nodes(out):
    docs = list(yaml.safe_load_all(_files(out / "cp-1")["/etc/k8sseed/kubeadm-init.yaml"]["content"]))
    cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert cluster["etcd"] == {"external": {
        "endpoints": ["https://10.50.0.31:2379", "https://10.50.0.32:2379", "https://10.50.0.33:2379"],
        "caFile": "/etc/kubernetes/pki/etcd/ca.crt", "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key"}}


def test_control_planes_wait_for_etcd_quorum_and_not_for_each_other(out):
    for name in CPS:
        files = _files(out / name)
        script = files["/usr/local/sbin/k8sseed-bootstrap"]["content"]
        assert "wait_for_external_etcd" in script
        assert "forget_own_etcd_member\n" not in script and "wait_for_earlier_control_planes\n" not in script
        assert "/usr/local/sbin/k8sseed-etcd" not in files  # the stacked tool signs with the etcd CA key
        env = files["/etc/k8sseed/node.env"]["content"]
        assert "K8SSEED_ETCD_MEMBER_IPS=(10.50.0.31 10.50.0.32 10.50.0.33)" in env
        assert "K8SSEED_ETCD_QUORUM=2" in env
        assert "K8SSEED_EARLIER_CONTROL_PLANES=()" in env


def test_etcd_nodes_run_etcd_only(out):
    files = _files(out / "etcd-2")
    assert not any(p.startswith(("/etc/docker", "/etc/k8sseed/kubeadm", "/etc/haproxy")) for p in files)
    assert files["/usr/local/sbin/k8sseed-bootstrap"]["content"].count("phase etcd-") == 2
    config = yaml.safe_load(files["/etc/k8sseed/etcd/etcd-new.yaml"]["content"])
    assert config["initial-cluster"] == ("etcd-1=https://10.50.0.31:2380,etcd-2=https://10.50.0.32:2380,"
                                         "etcd-3=https://10.50.0.33:2380")
    assert config["client-transport-security"]["client-cert-auth"] is True
    assert config["peer-transport-security"]["client-cert-auth"] is True
    existing = yaml.safe_load(files["/etc/k8sseed/etcd/etcd-existing.yaml"]["content"])
    assert {k: v for k, v in existing.items() if k != "initial-cluster-state"} == {
        k: v for k, v in config.items() if k != "initial-cluster-state"}
    assert (config["initial-cluster-state"], existing["initial-cluster-state"]) == ("new", "existing")
    env = files["/etc/k8sseed/node.env"]["content"]
    assert ("K8SSEED_ETCD_URL=https://github.com/etcd-io/etcd/releases/download/v3.5.27/"
            "etcd-v3.5.27-linux-amd64.tar.gz\n") in env
    assert "K8SSEED_ETCD_SHA256=0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc" in env


def test_the_etcd_unit_is_well_formed(out, tmp_path):
    analyze = require_tool("systemd-analyze")
    unit = _files(out / "etcd-1")["/etc/systemd/system/k8sseed-etcd.service"]["content"]
    assert ("ExecStartPre=+/usr/local/sbin/k8sseed-etcd-member prepare etcd-1 10.50.0.31 etcd-1 10.50.0.31 "
            "etcd-2 10.50.0.32 etcd-3 10.50.0.33") in unit
    (tmp_path / "k8sseed-etcd.service").write_text(unit)
    result = subprocess.run([analyze, "verify", str(tmp_path / "k8sseed-etcd.service")], capture_output=True,
                            text=True)
    bad = [line for line in result.stderr.splitlines()
           if "Unknown" in line or "Invalid" in line or "bad-setting" in line or "Failed to parse" in line]
    assert not bad, result.stderr


def _variant(tmp_path: Path, etcd_nodes: int, **etcd: object) -> tuple[Path, Path]:
    profile = yaml.safe_load(PROFILE.read_text())
    others = [n for n in profile["nodes"] if n["role"] != "etcd"]
    etcd_list = [n for n in profile["nodes"] if n["role"] == "etcd"][:etcd_nodes]
    profile["nodes"] = etcd_list + others
    if etcd:
        profile["etcd"] = etcd
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path, make_secret(tmp_path)


def test_one_etcd_node_builds_for_a_lab_with_a_warning_that_can_be_acknowledged(tmp_path):
    path, secret = _variant(tmp_path, 1)
    result = run_cli("build", str(path), "-o", str(tmp_path / "out"), "--secret", str(secret))
    assert result.returncode == 0, result.stderr
    assert "warning[single-etcd-member]: one etcd node" in result.stderr
    text = path.read_text().replace("acknowledge:\n- token-never-expires",
                                    "acknowledge:\n- token-never-expires\n- single-etcd-member")
    path.write_text(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_an_etcd_version_without_known_sums_warns_and_nodes_refuse_an_unchecked_download(tmp_path):
    path, secret = _variant(tmp_path, 3, version="3.6.8")
    result = run_cli("build", str(path), "-o", str(tmp_path / "out"), "--secret", str(secret))
    assert result.returncode == 0, result.stderr
    assert "warning[etcd-unverified]: etcd 3.6.8 is not in k8sseed's table" in result.stderr
    files = _files(tmp_path / "out" / "etcd-1")
    assert "K8SSEED_ETCD_SHA256=''" in files["/etc/k8sseed/node.env"]["content"]
    assert 'if [[ -z $K8SSEED_ETCD_SHA256 ]]; then\n      die "no etcd' in \
        files["/usr/local/sbin/k8sseed-bootstrap"]["content"]


def test_the_example_pins_an_etcd_its_kubeadm_takes():
    profile = yaml.safe_load(PROFILE.read_text())
    assert kubeadm_etcd_problem(profile["cluster"]["kubernetesVersion"], profile["etcd"]["version"]) is None


def test_without_a_pin_etcd_nodes_get_the_default_which_every_kubeadm_takes_checked_against_its_sum(tmp_path):
    profile = yaml.safe_load(PROFILE.read_text())
    del profile["etcd"]
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    result = run_cli("build", str(path), "-o", str(tmp_path / "out"), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    env = _files(tmp_path / "out" / "etcd-1")["/etc/k8sseed/node.env"]["content"]
    assert f"/v{ETCD_DEFAULT}/etcd-v{ETCD_DEFAULT}-linux-amd64.tar.gz\n" in env
    assert f"K8SSEED_ETCD_SHA256={ETCD_RELEASES[ETCD_DEFAULT]['amd64']}\n" in env
    assert all(kubeadm_etcd_problem(f.newest, ETCD_DEFAULT) is None for f in VERSION_TABLE.values())


def test_a_pinned_etcd_older_than_kubeadms_minimum_is_refused_at_its_line(tmp_path):
    path, secret = _variant(tmp_path, 3, version="3.5.12")
    result = run_cli("build", str(path), "-o", str(tmp_path / "out"), "--secret", str(secret))
    assert result.returncode == 2
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip() == "version: 3.5.12")
    assert result.stderr.startswith(f"{path}:{line}:")
    assert ": etcd.version: etcd 3.5.12 is older than 3.5.24, the oldest external etcd that kubeadm 1.33 " \
           "accepts" in result.stderr
    assert not (tmp_path / "out").exists()
