"""mirrors.registryCA: every node trusts the site's private registry, for Docker and for the system trust store."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, require_tool, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_ignition import decode_data_url

from k8sseed.registry_trust import ca_problem

MIRRORS = {
    "imageRepository": "harbor.example.com:5000/k8s",
    "calicoRegistry": "harbor.example.com:5000",
    "imageRegistries": {"quay.io": "quay-mirror.example.com/quay.io", "ghcr.io": "harbor.example.com:5000/ghcr"},
    "dockerHubMirrors": ["https://hub.example.com", "http://plain-hub.example.com"],
}
# One certs.d directory per registry the nodes pull from through a mirror: host[:port] as in the image names.
CERTS_D = ["/etc/docker/certs.d/harbor.example.com:5000/ca.crt", "/etc/docker/certs.d/hub.example.com/ca.crt",
           "/etc/docker/certs.d/quay-mirror.example.com/ca.crt"]


def _certificate(ca: bool) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Registry CA" if ca else "harbor")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return _certificate(ca=True)


def _build(tmp_path: Path, profile: Path, mirrors: dict) -> Path:
    data = yaml.safe_load(profile.read_text())
    data.setdefault("mirrors", {}).update(mirrors)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    result = run_cli("build", str(path), "-o", str(out), "--secret", str(make_secret(tmp_path)))
    assert result.returncode == 0, result.stderr
    return out


def _written(out: Path, node: str) -> dict[str, str]:
    user_data = yaml.safe_load((out / node / "user-data").read_text())
    return {f["path"]: f["content"] for f in user_data["write_files"]}


def _env(files: dict[str, str]) -> dict[str, str]:
    return {k: (shlex.split(v) or [""])[0] for k, _, v in
            (line.partition("=") for line in files["/etc/k8sseed/node.env"].splitlines() if "=" in line)
            if not v.startswith("(")}


def test_every_node_seed_carries_the_ca_at_each_certs_d_path_and_in_the_trust_store(tmp_path, ca_pem):
    out = _build(tmp_path, PROFILES / "reference.yaml", {**MIRRORS, "registryCA": ca_pem})
    for node in ("cp-1", "cp-2", "worker-1"):
        files = _written(out, node)
        assert sorted(p for p in files if p.startswith("/etc/docker/certs.d/")) == CERTS_D
        for path in [*CERTS_D, "/usr/local/share/ca-certificates/k8sseed-registry.crt"]:
            assert files[path] == ca_pem, path
        assert _env(files)["K8SSEED_REGISTRY_CA"] == "/usr/local/share/ca-certificates/k8sseed-registry.crt"


def test_the_bootstrap_trusts_the_ca_before_its_first_package(tmp_path, ca_pem):
    out = _build(tmp_path, PROFILES / "reference.yaml", {**MIRRORS, "registryCA": ca_pem})
    script = _written(out, "cp-1")["/usr/local/sbin/k8sseed-bootstrap"]
    prepare = script[script.index("phase_prepare_os() {"):]
    assert prepare.index("trust_registry_ca") < prepare.index("ensure_packages")
    assert "run update-ca-certificates" in script


def test_without_a_registry_ca_nothing_is_written(tmp_path):
    files = _written(_build(tmp_path, PROFILES / "reference.yaml", MIRRORS), "cp-1")
    assert not [p for p in files if p.startswith("/etc/docker/certs.d/") or "k8sseed-registry" in p]
    assert _env(files)["K8SSEED_REGISTRY_CA"] == ""


def test_flatcar_ignition_carries_the_ca_too(tmp_path, ca_pem):
    # No imageRegistries on Flatcar (its rewrite needs python3, which Flatcar lacks).
    out = _build(tmp_path, PROFILES / "flatcar.yaml", {**MIRRORS, "imageRegistries": {}, "registryCA": ca_pem})
    certs_d = [p for p in CERTS_D if "quay-mirror" not in p]
    checked = 0
    validate = require_tool("ignition-validate")
    for config in sorted(out.glob("*.ign")):
        result = subprocess.run([validate, str(config)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout + result.stderr
        ignition = json.loads(config.read_text())
        # Ignition's own fetches (sysext images from the site's mirror) trust the CA as well.
        assert [decode_data_url(ca["source"]).decode("utf-8")
                for ca in ignition["ignition"]["security"]["tls"]["certificateAuthorities"]] == [ca_pem]
        files = {f["path"]: decode_data_url(f["contents"]["source"]).decode("utf-8")
                 for f in ignition["storage"]["files"] if f["contents"]["source"].startswith("data:")}
        if "/etc/k8sseed/etcd.env" in files:
            continue
        assert sorted(p for p in files if p.startswith("/etc/docker/certs.d/")) == certs_d
        for path in [*certs_d, "/etc/ssl/certs/k8sseed-registry.pem"]:
            assert files[path] == ca_pem, (config.name, path)
        assert "K8SSEED_REGISTRY_CA=/etc/ssl/certs/k8sseed-registry.pem" in files["/etc/k8sseed/node.env"]
        checked += 1
    assert checked == 4


def test_a_ca_bundle_passes_and_a_server_certificate_in_it_does_not(ca_pem):
    assert ca_problem(ca_pem + _certificate(ca=True)) is None
    assert "is not a CA certificate" in ca_problem(ca_pem + _certificate(ca=False))


def test_external_etcd_members_trust_it_for_their_etcd_download(tmp_path, ca_pem):
    out = _build(tmp_path, PROFILES / "external-etcd.yaml",
                 {"etcd": "https://artifacts.example.com/etcd/v{version}/etcd-v{version}-linux-{arch}.tar.gz",
                  "registryCA": ca_pem})
    files = _written(out, "etcd-1")
    assert files["/usr/local/share/ca-certificates/k8sseed-registry.crt"] == ca_pem
    assert not [p for p in files if p.startswith("/etc/docker/")]  # no Docker on an etcd member
    script = files["/usr/local/sbin/k8sseed-bootstrap"]
    install = script[script.index("phase_etcd_install() {"):]
    assert install.index("trust_registry_ca") < install.index("fetch ")
    # An https download mirror alone is reason enough for the CA: no registry host, no certs.d.
    assert _written(out, "cp-1")["/usr/local/share/ca-certificates/k8sseed-registry.crt"] == ca_pem
