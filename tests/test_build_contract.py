"""The output contract of `k8sseed build` (DESIGN §3, §4)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, make_secret, node_dirs, require_tool, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8sseed.writers.iso import read_iso

SEED_FILES = ("user-data", "meta-data", "network-config")


def _write_files(seed_dir: Path) -> dict[str, str]:
    data = yaml.safe_load((seed_dir / "user-data").read_text())
    return {f["path"]: f["content"] for f in data["write_files"]}


def _node_env(seed_dir: Path) -> dict[str, str]:
    env = {}
    for line in _write_files(seed_dir)["/etc/k8sseed/node.env"].splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip("'")
    return env


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_each_iso_reads_back_with_pycdlib_as_cidata_and_equals_the_directory_copy(built):
    for out in built.values():
        for node in _manifest(out)["nodes"]:
            label, files = read_iso((out / node["iso"]).read_bytes())
            assert label == "cidata"
            assert set(files) == set(SEED_FILES)
            for name in SEED_FILES:
                assert files[name] == (out / node["name"] / name).read_bytes()


def test_each_iso_reads_back_with_isoinfo_and_xorriso(built, tmp_path):
    isoinfo = require_tool("isoinfo")
    xorriso = require_tool("xorriso")
    out = built["reference"]
    iso = out / "cp-1.iso"
    info = subprocess.run([isoinfo, "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Volume id: cidata$", info, re.M)
    assert "Rock Ridge signatures version 1 found" in info
    assert "Joliet with UCS level 3 found" in info
    for name in SEED_FILES:
        data = subprocess.run([isoinfo, "-R", "-i", str(iso), "-x", f"/{name}"], capture_output=True, check=True).stdout
        assert data == (out / "cp-1" / name).read_bytes()
        joliet = subprocess.run([isoinfo, "-J", "-i", str(iso), "-x", f"/{name}"],
                                capture_output=True, check=True).stdout
        assert joliet == data
    extract = tmp_path / "x"
    subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(extract)],
                   capture_output=True, check=True)
    for name in SEED_FILES:
        assert (extract / name).read_bytes() == (out / "cp-1" / name).read_bytes()


def test_manifest_lists_every_node_with_iso_hash_and_no_secrets(built):
    for stem, out in built.items():
        manifest = _manifest(out)
        profile = yaml.safe_load((PROFILES / f"{stem}.yaml").read_text())
        assert [n["name"] for n in sorted(manifest["nodes"], key=lambda n: n["name"])] == \
            sorted(n["name"] for n in profile["nodes"])
        for node in manifest["nodes"]:
            assert node["sha256"] == hashlib.sha256((out / node["iso"]).read_bytes()).hexdigest()
        text = (out / "manifest.json").read_text()
        assert "PRIVATE KEY" not in text
        token = _node_env(out / manifest["nodes"][0]["name"])
        assert "token" not in text.lower() or token.get("K8SSEED_DUTY")
        for key in ("k8sseedVersion", "profileSha256", "clusterName", "kubernetesVersion", "controlPlaneEndpoint",
                    "topology", "lbMode"):
            assert key in manifest
        assert sorted(n["bootstrapOrder"] for n in manifest["nodes"]) == list(range(len(manifest["nodes"])))


def test_exactly_one_seed_runs_kubeadm_init(built):
    for out in built.values():
        inits = [d.name for d in node_dirs(out) if _node_env(d)["K8SSEED_DUTY"] == "init"]
        assert len(inits) == 1
        assert "/etc/k8sseed/kubeadm-init.yaml" in _write_files(out / inits[0])
        others = [d for d in node_dirs(out) if d.name != inits[0]]
        assert all("/etc/k8sseed/kubeadm-init.yaml" not in _write_files(d) for d in others)
        assert _manifest(out)["nodes"][0]["name"] == inits[0]


def test_every_joiner_pins_the_spki_hash_of_the_control_plane_ca(built):
    for out in built.values():
        cp = next(d for d in node_dirs(out) if _node_env(d)["K8SSEED_DUTY"] == "init")
        ca_pem = _write_files(cp)["/etc/k8sseed/pki/ca.crt"]
        cert = x509.load_pem_x509_certificate(ca_pem.encode())
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        expected = "sha256:" + hashlib.sha256(spki).hexdigest()
        # The same hash as openssl computes from the certificate.
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], check=True, capture_output=True,
                             input=subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=ca_pem.encode(),
                                                  capture_output=True, check=True).stdout).stdout
        assert expected == "sha256:" + hashlib.sha256(der).hexdigest()
        for seed in node_dirs(out):
            files = _write_files(seed)
            if _node_env(seed)["K8SSEED_DUTY"] == "etcd":
                continue  # an external etcd member never joins Kubernetes
            join = yaml.safe_load(files["/etc/k8sseed/kubeadm-join.yaml"])
            discovery = join["discovery"]["bootstrapToken"]
            assert discovery["caCertHashes"] == [expected]
            assert "unsafeSkipCAVerification" not in json.dumps(join)
            assert files["/etc/k8sseed/cluster-ca.crt"] == ca_pem


def test_workers_carry_no_private_keys(built):
    for out in built.values():
        for node in _manifest(out)["nodes"]:
            text = (out / node["name"] / "user-data").read_text()
            if node["role"] == "worker":
                assert "PRIVATE KEY" not in text
                assert "/etc/k8sseed/pki/" not in text
            elif node["role"] == "control-plane":
                assert "/etc/k8sseed/pki/ca.key" in text


def test_control_planes_get_exactly_the_eight_shared_pki_files(built):
    shared = {"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt",
              "etcd/ca.key"}
    out = built["reference"]
    for name in ("cp-1", "cp-2", "cp-3"):
        prefix = "/etc/k8sseed/pki/"
        pki = {p.removeprefix(prefix) for p in _write_files(out / name) if p.startswith(prefix)}
        assert pki == shared


def test_rebuild_is_byte_identical_across_time_zones(tmp_path):
    secret = make_secret(tmp_path)
    outs = []
    for zone in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        out = tmp_path / f"out-{zone.replace('/', '-')}"
        env = {**os.environ, "TZ": zone}
        env.pop("SOURCE_DATE_EPOCH", None)
        result = run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret), env=env)
        assert result.returncode == 0, result.stderr
        outs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outs[0] == outs[1] == outs[2]


def test_source_date_epoch_sets_iso_timestamps(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    assert run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(out), "--secret", str(secret),
                   env=env).returncode == 0
    info = subprocess.run([require_tool("xorriso"), "-indev", str(out / "solo-1.iso"), "-pvd_info"],
                          capture_output=True, text=True).stdout + ""
    assert re.search(r"^Creation Time: 2023111422132000$", info, re.M), info


def test_output_is_private(built):
    out = built["reference"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_same_secret_gives_same_cluster_identity_when_a_node_is_added(tmp_path):
    secret = make_secret(tmp_path)
    base = (PROFILES / "reference.yaml").read_text()
    grown = tmp_path / "grown.yaml"
    grown.write_text(base + '  - {name: worker-4, role: worker, ip: 10.20.0.24/24, mac: "52:54:00:20:00:24"}\n')
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(a), "--secret", str(secret)).returncode == 0
    assert run_cli("build", str(grown), "-o", str(b), "--secret", str(secret)).returncode == 0
    old, new = _write_files(a / "worker-1"), _write_files(b / "worker-4")
    assert yaml.safe_load(old["/etc/k8sseed/kubeadm-join.yaml"])["discovery"] == \
        yaml.safe_load(new["/etc/k8sseed/kubeadm-join.yaml"])["discovery"]
    # Adding a worker leaves every existing seed as it was: nodes already running need no new ISO.
    for name in ("cp-1", "cp-2", "cp-3", "worker-1"):
        assert (a / name / "user-data").read_bytes() == (b / name / "user-data").read_bytes()
        assert (a / f"{name}.iso").read_bytes() == (b / f"{name}.iso").read_bytes()


def test_different_secrets_give_different_cas_and_tokens(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        secret = make_secret(tmp_path, f"s{i}")
        result = run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(out), "--secret", str(secret))
        assert result.returncode == 0
        outs.append(_write_files(out / "solo-1"))
    assert outs[0]["/etc/k8sseed/pki/ca.crt"] != outs[1]["/etc/k8sseed/pki/ca.crt"]
    assert outs[0]["/etc/k8sseed/kubeadm-init.yaml"] != outs[1]["/etc/k8sseed/kubeadm-init.yaml"]


def test_a_failed_build_leaves_the_previous_output_untouched(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = tmp_path / "broken.yaml"
    broken.write_text((PROFILES / "reference.yaml").read_text().replace("10.20.0.12/24", "10.20.0.300/24"))
    result = run_cli("build", str(broken), "-o", str(out), "--secret", str(secret))
    assert result.returncode == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_rebuild_replaces_the_previous_output_completely(tmp_path):
    secret = make_secret(tmp_path)
    out = tmp_path / "out"
    assert run_cli("build", str(PROFILES / "reference.yaml"), "-o", str(out), "--secret", str(secret)).returncode == 0
    # another cluster's seeds are only replaced on request (tests/test_output_safety.py)
    assert run_cli("build", str(PROFILES / "single-node.yaml"), "-o", str(out), "--secret", str(secret),
                   "--force").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "solo-1", "solo-1.iso"]


def test_kubeadm_api_follows_the_version_table(built):
    def api(out: Path) -> str:
        init = next(d for d in node_dirs(out) if _node_env(d)["K8SSEED_DUTY"] == "init")
        return yaml.safe_load(_write_files(init)["/etc/k8sseed/kubeadm-join.yaml"])["apiVersion"]

    assert api(built["reference"]) == "kubeadm.k8s.io/v1beta3"  # 1.25
    assert api(built["single-node"]) == "kubeadm.k8s.io/v1beta3"  # 1.30
    assert api(built["current"]) == "kubeadm.k8s.io/v1beta4"  # 1.34


def test_cri_dockerd_gets_the_pause_image_of_the_kubernetes_minor(built):
    expected = {"reference": "registry.k8s.io/pause:3.8", "keepalived-haproxy": "registry.k8s.io/pause:3.8",
                "single-node": "registry.k8s.io/pause:3.9", "node-local": "registry.k8s.io/pause:3.10",
                "current": "harbor.lab.example.com:5000/registry.k8s.io/pause:3.10.1",
                "external-etcd": "registry.k8s.io/pause:3.10",
                "flatcar": "registry.k8s.io/pause:3.10.1"}
    for stem, out in built.items():
        seed = node_dirs(out)[0]
        unit = _write_files(seed)["/etc/systemd/system/cri-docker.service"]
        assert f"--pod-infra-container-image={expected[stem]}" in unit


def test_init_configuration_pins_the_cri_socket_and_node_ip(built):
    out = built["reference"]
    docs = list(yaml.safe_load_all(_write_files(out / "cp-1")["/etc/k8sseed/kubeadm-init.yaml"]))
    by_kind = {d["kind"]: d for d in docs}
    init, cluster = by_kind["InitConfiguration"], by_kind["ClusterConfiguration"]
    assert init["nodeRegistration"]["criSocket"] == "unix:///var/run/cri-dockerd.sock"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.20.0.11"}
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.20.0.11", "bindPort": 6443}
    assert cluster["controlPlaneEndpoint"] == "10.20.100.10:6443"
    assert cluster["kubernetesVersion"] == "v1.25.6"
    assert set(cluster["apiServer"]["certSANs"]) >= {"10.20.100.10", "10.20.0.11", "10.20.0.12", "10.20.0.13"}
    assert by_kind["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    proxy = by_kind["KubeProxyConfiguration"]
    assert proxy["mode"] == "ipvs" and proxy["ipvs"] == {"scheduler": "rr", "strictARP": True}
    join = yaml.safe_load(_write_files(out / "cp-2")["/etc/k8sseed/kubeadm-join.yaml"])
    assert join["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "10.20.0.12", "bindPort": 6443}}
    assert "certificateKey" not in json.dumps(join)
    worker = yaml.safe_load(_write_files(out / "worker-1")["/etc/k8sseed/kubeadm-join.yaml"])
    assert "controlPlane" not in worker


def test_v1beta4_uses_list_style_extra_args(built):
    docs = list(yaml.safe_load_all(_write_files(built["current"] / "m1")["/etc/k8sseed/kubeadm-init.yaml"]))
    init = docs[0]
    assert {"name": "node-ip", "value": "172.16.10.11"} in init["nodeRegistration"]["kubeletExtraArgs"]
    w1 = yaml.safe_load(_write_files(built["current"] / "w1")["/etc/k8sseed/kubeadm-join.yaml"])
    labels = next(a["value"] for a in w1["nodeRegistration"]["kubeletExtraArgs"] if a["name"] == "node-labels")
    assert labels == "example.com/storage=ssd,topology.kubernetes.io/zone=rack-a"


def test_ipvs_modules_load_now_and_at_boot(built):
    files = _write_files(built["reference"] / "worker-1")
    modules = files["/etc/modules-load.d/k8sseed.conf"].split()
    for module in ("overlay", "br_netfilter", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"):
        assert module in modules
    assert "nf_conntrack_ipv4" not in modules
    env = files["/etc/k8sseed/node.env"]
    assert "K8SSEED_KERNEL_MODULES=(overlay br_netfilter ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack)" in env


def test_passwords_are_hashed_with_sha512_crypt_and_never_written_in_clear(built):
    text = (built["current"] / "m1" / "user-data").read_text()
    assert "correct-horse-battery-staple" not in text
    user = yaml.safe_load(text)["users"][0]
    assert user["hashed_passwd"].startswith("$6$rounds=656000$")
    from passlib.hash import sha512_crypt

    assert sha512_crypt.verify("correct-horse-battery-staple", user["hashed_passwd"])
    assert yaml.safe_load(text)["ssh_pwauth"] is False


def test_kubernetes_packages_come_from_pkgs_k8s_io_or_the_mirror(built):
    ref = _node_env(built["reference"] / "cp-1")
    assert ref["K8SSEED_KUBERNETES_REPO"] == "https://pkgs.k8s.io/core:/stable:/v1.25/deb/"
    cur = _node_env(built["current"] / "m1")
    assert cur["K8SSEED_KUBERNETES_REPO"] == \
        "https://artifacts.lab.example.com/pkgs.k8s.io/core:/stable:/v1.34/deb/"
    for out in built.values():
        for seed in node_dirs(out):
            text = (seed / "user-data").read_text()
            assert "apt.kubernetes.io" not in text and "packages.cloud.google.com" not in text


@pytest.mark.parametrize("stem", ["reference", "current", "single-node"])
def test_instance_id_changes_when_the_seed_changes(tmp_path, stem):
    secret = make_secret(tmp_path)
    profile = PROFILES / f"{stem}.yaml"
    changed = tmp_path / "changed.yaml"
    changed.write_text(profile.read_text().replace("mode: external", "mode: external  # edited")
                       .replace("notBefore:", "notBefore:") + "\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("build", str(profile), "-o", str(a), "--secret", str(secret)).returncode == 0
    assert run_cli("build", str(changed), "-o", str(b), "--secret", str(secret)).returncode == 0
    # Comments do not change seeds, so neither does the instance-id.
    assert sorted((p.name, p.read_bytes()) for p in a.rglob("meta-data")) == \
        sorted((p.name, p.read_bytes()) for p in b.rglob("meta-data"))
    other = make_secret(tmp_path, "other.secret")
    c = tmp_path / "c"
    assert run_cli("build", str(profile), "-o", str(c), "--secret", str(other)).returncode == 0
    assert sorted(p.read_bytes() for p in a.rglob("meta-data")) != sorted(p.read_bytes() for p in c.rglob("meta-data"))


def test_v1beta4_configurations_give_a_slow_first_api_server_time_to_come_up(built):
    """kubeadm 1.36 asks for its admin client before it waits for the control plane, and gives up after
    timeouts.kubernetesAPICall (1m by default): a slow first start failed init in the real VM run."""
    for out in (built["current"], built["flatcar"]):
        for seed in node_dirs(out):
            files = _write_files(seed)
            for path in ("/etc/k8sseed/kubeadm-init.yaml", "/etc/k8sseed/kubeadm-join.yaml"):
                for doc in yaml.safe_load_all(files.get(path, "")):
                    if doc and doc["kind"] in ("InitConfiguration", "JoinConfiguration"):
                        assert doc["apiVersion"] == "kubeadm.k8s.io/v1beta4"
                        assert doc["timeouts"]["kubernetesAPICall"] == "5m0s", (seed.name, path)
                        assert doc["timeouts"]["controlPlaneComponentHealthCheck"] == "10m0s", (seed.name, path)
    reference = yaml.safe_load_all(_write_files(built["reference"] / "cp-1")["/etc/k8sseed/kubeadm-init.yaml"])
    assert all("timeouts" not in d for d in reference if d), "v1beta3 (1.25) has no timeouts field"


def test_debian_and_ubuntu_nodes_install_apparmor_for_docker(built):
    """dockerd starts no container on an AppArmor kernel without apparmor_parser, and the bootstrap installs
    Docker without its recommends: the real VM run failed every pod sandbox this way."""
    for stem, out in built.items():
        for seed in node_dirs(out):
            env = _write_files(seed)["/etc/k8sseed/node.env"]
            packages = re.search(r"^K8SSEED_OS_PACKAGES=\((.*)\)$", env, re.M)
            if "flatcar" in stem or "K8SSEED_DOCKER_SOURCE=" not in env:
                continue  # Flatcar ships its Docker; external etcd members run no Docker
            assert packages and "apparmor" in packages.group(1).split(), (stem, seed.name)
