"""Every artefact we emit is checked by the tool or schema that will consume it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import SCHEMAS, node_dirs, require_tool


def _seed_dirs(built: dict[str, Path]) -> list[Path]:
    return [d for out in built.values() for d in node_dirs(out)]


def _user_data(seed_dir: Path) -> dict:
    text = (seed_dir / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def _written(seed_dir: Path) -> dict[str, dict]:
    return {f["path"]: f for f in _user_data(seed_dir)["write_files"]}


def test_every_user_data_passes_cloud_init_schema(built):
    cloud_init = require_tool("cloud-init")
    for seed in _seed_dirs(built):
        result = subprocess.run([cloud_init, "schema", "--config-file", str(seed / "user-data")],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{seed}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout


def test_every_user_data_passes_the_upstream_cloud_config_schema(built):
    schema = json.loads((SCHEMAS / "cloud-init-schema-cloud-config-v1.json").read_text())
    validator = jsonschema.Draft4Validator(schema)
    for seed in _seed_dirs(built):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_user_data(seed))]
        assert not errors, f"{seed}: {errors}"


def test_every_network_config_passes_the_upstream_v2_schema(built):
    schema = json.loads((SCHEMAS / "cloud-init-schema-network-config-v2.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for seed in _seed_dirs(built):
        config = yaml.safe_load((seed / "network-config").read_text())
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(config)]
        assert not errors, f"{seed}: {errors}"
        nic = next(iter(config["ethernets"].values()))
        assert nic["match"]["macaddress"], "interfaces are matched by MAC"


def _component_documents(built: dict[str, Path]):
    for seed in _seed_dirs(built):
        for path, entry in _written(seed).items():
            if path.startswith("/etc/k8sseed/kubeadm-"):
                for doc in yaml.safe_load_all(entry["content"]):
                    yield seed, path, doc


def test_kubeadm_kubelet_and_kube_proxy_documents_pass_the_strict_schemas(built, upstream_index):
    files = {
        "kubeadm.k8s.io/v1beta3": SCHEMAS / "kubeadm-v1beta3.schema.json",
        "kubeadm.k8s.io/v1beta4": SCHEMAS / "kubeadm-v1beta4.schema.json",
        "kubelet.config.k8s.io/v1beta1": SCHEMAS / "kubelet-v1beta1.schema.json",
        "kubeproxy.config.k8s.io/v1alpha1": SCHEMAS / "kubeproxy-v1alpha1.schema.json",
    }
    validators = {api: jsonschema.Draft202012Validator(json.loads(f.read_text())) for api, f in files.items()}
    kinds = set()
    for seed, path, doc in _component_documents(built):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validators[doc["apiVersion"]].iter_errors(doc)]
        assert not errors, f"{seed}{path} {doc['kind']}: {errors}"
        kinds.add((doc["apiVersion"], doc["kind"]))
    assert ("kubeadm.k8s.io/v1beta3", "InitConfiguration") in kinds, "reference profile exercises v1beta3"
    assert ("kubeadm.k8s.io/v1beta4", "JoinConfiguration") in kinds, "a current profile exercises v1beta4"
    assert ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration") in kinds
    assert ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration") in kinds


def test_fields_used_exist_in_the_profiles_kubernetes_minor(built):
    """kube-proxy and kubelet schemas are unions over 1.24..1.36: check the version annotations too."""
    proxy = json.loads((SCHEMAS / "kubeproxy-v1alpha1.schema.json").read_text())
    for seed, _, doc in _component_documents(built):
        if doc["kind"] != "KubeProxyConfiguration":
            continue
        manifest = json.loads((seed.parent / "manifest.json").read_text())
        minor = int(manifest["kubernetesVersion"].split(".")[1])
        for key in doc:
            spec = proxy["properties"].get(key, {})
            since = spec.get("x-k8s-since")
            removed = spec.get("x-k8s-removed-in")
            if since:
                assert minor >= int(str(since).split(".")[1]), f"{key} needs {since}"
            if removed:
                assert minor < int(str(removed).split(".")[1]), f"{key} removed in {removed}"


def test_every_script_written_to_a_node_passes_shellcheck(built, tmp_path):
    shellcheck = require_tool("shellcheck")
    checked = set()
    for seed in _seed_dirs(built):
        for path, entry in _written(seed).items():
            content = entry["content"]
            is_script = content.startswith("#!/bin/bash") or path.endswith(".env")
            if not is_script or (path, content) in checked:
                continue
            checked.add((path, content))
            target = tmp_path / f"{len(checked)}-{Path(path).name}"
            target.write_text(content)
            result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(target)],
                                    capture_output=True, text=True)
            assert result.returncode == 0, f"{seed.name}:{path}\n{result.stdout}"
            assert subprocess.run(["bash", "-n", str(target)]).returncode == 0
    assert any(p == "/usr/local/sbin/k8sseed-bootstrap" for p, _ in checked)
    assert any(p == "/usr/local/sbin/k8sseed-apt" for p, _ in checked)
    assert any(p == "/etc/k8sseed/node.env" for p, _ in checked)


def test_systemd_units_are_well_formed(built, tmp_path):
    analyze = require_tool("systemd-analyze")
    seed = next(d for d in _seed_dirs(built) if d.name == "cp-1")
    units = {p: e for p, e in _written(seed).items()
             if p.startswith("/etc/systemd/system/") and p.count("/") == 4}
    assert set(units) >= {"/etc/systemd/system/k8sseed-bootstrap.service", "/etc/systemd/system/cri-docker.service",
                          "/etc/systemd/system/cri-docker.socket"}
    for path, entry in units.items():
        (tmp_path / Path(path).name).write_text(entry["content"])
    # verify complains about binaries missing on this host; it must find no syntax problem.
    result = subprocess.run([analyze, "verify", *(str(tmp_path / Path(p).name) for p in units)],
                            capture_output=True, text=True)
    bad = [line for line in result.stderr.splitlines()
           if ("Unknown" in line or "Invalid" in line or "bad-setting" in line or "Failed to parse" in line)]
    assert not bad, result.stderr


@pytest.mark.parametrize("key", ["exec-opts"])
def test_docker_uses_the_systemd_cgroup_driver(built, key):
    for seed in _seed_dirs(built):
        if "/etc/k8sseed/etcd/etcd-new.yaml" in _written(seed):
            continue  # an external etcd member runs no container runtime
        daemon = json.loads(_written(seed)["/etc/docker/daemon.json"]["content"])
        assert daemon[key] == ["native.cgroupdriver=systemd"]
