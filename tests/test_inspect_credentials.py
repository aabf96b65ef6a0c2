"""`k8sseed inspect` lists the certificates, keys and token lifetime a seed carries, checked against openssl on
the very files, on every example profile's OUT; it never prints a key or the token's secret."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, make_secret, node_dirs, require_tool, run_cli
from test_cert_renewal import _certificate, _kubeconfig

from k8sseed.seed_credentials import seed_credentials


def _inspect(target: Path) -> dict:
    result = run_cli("inspect", "--json", str(target))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _written(seed: Path) -> dict[str, str]:
    return {f["path"]: f["content"] for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}


def _openssl(pem: str) -> dict[str, str]:
    openssl = require_tool("openssl")
    result = subprocess.run([openssl, "x509", "-noout", "-fingerprint", "-sha256", "-enddate", "-subject",
                             "-nameopt", "RFC2253"], input=pem, capture_output=True, text=True, check=True)
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines())
    return {k.strip().lower(): v.strip() for k, v in fields.items()}


def test_inspect_of_every_example_out_lists_each_certificate_as_openssl_reads_it(built):
    checked = 0
    for stem, out in built.items():
        report = _inspect(out)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [n["name"] for n in report["nodes"]] == [n["name"] for n in manifest["nodes"]]
        for node in report["nodes"]:
            files = _written(out / node["name"])
            pem_files = {p: c for p, c in files.items() if "-----BEGIN CERTIFICATE-----" in c}
            assert sorted(c["location"] for c in node["certificates"]) == sorted(pem_files), f"{stem}/{node['name']}"
            for cert in node["certificates"]:
                truth = _openssl(pem_files[cert["location"]])
                assert cert["sha256Fingerprint"] == truth["sha256 fingerprint"]
                assert cert["subject"] == truth["subject"]
                end = cert["notAfter"]
                assert truth["notafter"].endswith(f"{end[:4]} GMT") and f" {int(end[8:10])} " in f" {truth['notafter']}"
                checked += 1
    assert checked


def test_private_keys_are_reported_where_the_role_carries_them(built):
    for stem, out in built.items():
        report = _inspect(out)
        for node in report["nodes"]:
            cas = [c for c in node["certificates"] if c["ca"]]
            assert cas, f"{stem}/{node['name']}: every seed carries the cluster CA"
            with_key = {c["location"] for c in node["certificates"] if c["privateKeyPresent"]}
            if node["role"] == "control-plane":
                assert {"/etc/k8sseed/pki/ca.crt", "/etc/k8sseed/pki/front-proxy-ca.crt"} <= with_key
                assert any(k["location"].endswith("/sa.key") and k["certificate"] is None
                           for k in node["privateKeys"])
                assert [k["provider"] for k in node["encryptionKeys"]] == ["secretbox"]
            elif node["role"] == "etcd":  # external etcd: its own server and peer keys, nothing else
                assert with_key == {"/etc/k8sseed/etcd/pki/server.crt", "/etc/k8sseed/etcd/pki/peer.crt"}, node["name"]
                assert all(k["certificate"] for k in node["privateKeys"]), f"{stem}/{node['name']}"
                assert not node["encryptionKeys"], f"{stem}/{node['name']}"
            else:
                assert not with_key and not node["privateKeys"] and not node["encryptionKeys"], f"{stem}/{node['name']}"


def test_the_token_lifetime_is_read_from_the_init_nodes_kubeadm_config(tmp_path):
    profile = tmp_path / "profile.yaml"
    text = (REPO / "profiles" / "single-node.yaml").read_text()
    secret = make_secret(tmp_path)
    outs = {}
    base = text
    for name, ttl in (("default", None), ("day", "24h"), ("never", '"0"')):
        text = base
        if ttl:
            assert "  controlPlaneEndpoint:" in text
            text = text.replace("  controlPlaneEndpoint:", f"  bootstrapTokenTTL: {ttl}\n  controlPlaneEndpoint:", 1)
        profile.write_text(text)
        outs[name] = tmp_path / name
        result = run_cli("build", str(profile), "-o", str(outs[name]), "--secret", str(secret),
                         "--now", "2026-11-26T12:00:00Z")
        assert result.returncode == 0, result.stderr
    # The default: the token of the build's 7-day window, valid to the end of the next window (windows start on
    # Thursdays 00:00 UTC: 2026-11-26 is one).
    assert [t["lifetime"] for t in _inspect(outs["default"])["bootstrapTokens"]] == ["expires 2026-12-10T00:00:00Z"]
    assert [t["lifetime"] for t in _inspect(outs["day"])["bootstrapTokens"]] == ["ttl 24h after kubeadm init"]
    assert [t["lifetime"] for t in _inspect(outs["never"])["bootstrapTokens"]] == ["never expires (ttl 0)"]
    text_out = run_cli("inspect", str(outs["day"])).stdout
    assert re.search(r"bootstrap token [a-z0-9]{6}: ttl 24h after kubeadm init", text_out)


def test_inspect_never_prints_a_private_key_the_token_secret_or_the_encryption_key(built):
    out = built["reference"]
    files = _written(out / "cp-1")
    init = next(yaml.safe_load_all(files["/etc/k8sseed/kubeadm-init.yaml"]))
    token_secret = init["bootstrapTokens"][0]["token"].split(".")[1]
    encryption_key = yaml.safe_load(files["/etc/kubernetes/encryption/config.yaml"])["resources"][0]["providers"][0][
        "secretbox"]["keys"][0]["secret"]
    for args in (["inspect", str(out)], ["inspect", "--json", str(out)], ["inspect", str(out / "cp-1.iso")],
                 ["inspect", "--json", str(out / "cp-1")]):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert "PRIVATE KEY" not in result.stdout
        assert token_secret not in result.stdout and encryption_key not in result.stdout


def test_a_seed_directory_and_its_iso_report_the_same_credentials(built):
    out = built["current"]
    for seed in node_dirs(out)[:2]:
        from_dir, from_iso = _inspect(seed), _inspect(out / f"{seed.name}.iso")
        for key in ("certificates", "privateKeys", "bootstrapToken", "encryptionKeys"):
            assert from_dir[key] == from_iso[key]


def test_certificates_embedded_in_kubeconfigs_are_found_with_their_keys():
    cert = _certificate("system:node:worker-9", 30)
    ca = _certificate("kubernetes", 3000, is_ca=True)
    config = yaml.safe_load(_kubeconfig(cert))
    config["clusters"] = [{"name": "k", "cluster": {"certificate-authority-data": base64.b64encode(ca).decode(),
                                                     "server": "https://10.0.0.1:6443"}}]
    found = seed_credentials({"/etc/k8sseed/bootstrap.conf": yaml.safe_dump(config)})
    subjects = {c["subject"]: c for c in found["certificates"]}
    assert set(subjects) == {"CN=system:node:worker-9", "CN=kubernetes"}
    assert subjects["CN=kubernetes"]["ca"] is True
    assert all(c["location"].startswith("/etc/k8sseed/bootstrap.conf ") for c in found["certificates"])


def test_inspect_of_a_directory_that_is_no_seed_says_what_it_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = run_cli("inspect", str(tmp_path))
    assert result.returncode == 1
    assert "neither a seed directory" in result.stderr and "Traceback" not in result.stderr


def test_inspect_of_an_out_with_a_missing_seed_directory_fails_cleanly(built, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(built["single-node"], copy)
    victim = node_dirs(copy)[0]
    shutil.rmtree(victim)
    result = run_cli("inspect", str(copy))
    assert result.returncode == 1 and "incomplete" in result.stderr
