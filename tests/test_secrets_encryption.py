"""Secrets at rest: the API server encrypts Secrets with a key derived from the cluster secret, which only
control-plane seeds carry."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO, make_secret, node_dirs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sseed.build import load_plan
from k8sseed.secrets import read_secret

SCHEMA = json.loads((REPO / "tests" / "data" / "encryption-configuration-v1.schema.json").read_text())
CONFIG_PATH = "/etc/kubernetes/encryption/config.yaml"


def _written(seed: Path) -> dict[str, dict]:
    return {f["path"]: f for f in yaml.safe_load((seed / "user-data").read_text())["write_files"]}


def _kubeadm_documents(seed: Path) -> dict[str, dict]:
    files = _written(seed)
    docs: dict[str, dict] = {}
    for path in ("/etc/k8sseed/kubeadm-init.yaml", "/etc/k8sseed/kubeadm-join.yaml"):
        if path in files:
            for doc in yaml.safe_load_all(files[path]["content"]):
                docs.setdefault(doc["kind"], doc)
    return docs


def _seeds(built: dict[str, Path]) -> list[tuple[str, Path, bool]]:
    """(profile, seed dir, is control plane) for every node of every example profile."""
    seeds = []
    for stem, out in built.items():
        roles = {n["name"]: n["role"] for n in json.loads((out / "manifest.json").read_text())["nodes"]}
        seeds += [(stem, d, roles[d.name] == "control-plane") for d in node_dirs(out)]
    return seeds


def test_every_control_plane_seed_carries_a_valid_encryption_configuration(built):
    validator = jsonschema.Draft202012Validator(SCHEMA)
    control_planes = [(stem, seed) for stem, seed, is_cp in _seeds(built) if is_cp]
    assert control_planes
    for stem, seed in control_planes:
        entry = _written(seed)[CONFIG_PATH]
        assert entry["permissions"] == "0600", f"{stem}/{seed.name}"
        config = yaml.safe_load(entry["content"])
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
        assert not errors, f"{stem}/{seed.name}: {errors}"
        [rule] = config["resources"]
        assert rule["resources"] == ["secrets"]
        first, last = rule["providers"]
        # secretbox writes; identity reads what was stored before encryption was on.
        assert last == {"identity": {}}
        [key] = first["secretbox"]["keys"]
        assert len(base64.b64decode(key["secret"], validate=True)) == 32  # secretbox needs a 32-byte key


def test_worker_seeds_carry_no_encryption_configuration_nor_its_key(built):
    for stem, out in built.items():
        keys = set()
        for seed in node_dirs(out):
            if CONFIG_PATH in _written(seed):
                config = yaml.safe_load(_written(seed)[CONFIG_PATH]["content"])
                keys.add(config["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"])
        assert len(keys) == 1, f"{stem}: every control plane must use the same key"
        key = keys.pop()
        workers = [s for p, s, is_cp in _seeds({stem: out}) if not is_cp]
        for seed in workers:
            assert CONFIG_PATH not in _written(seed)
            for name in ("user-data", "meta-data", "network-config"):
                assert key not in (seed / name).read_text(), f"{stem}/{seed.name}/{name} holds the encryption key"
            assert key.encode() not in (out / f"{seed.name}.iso").read_bytes()


def test_kube_apiserver_reads_the_configuration_in_both_kubeadm_shapes(built):
    shapes = set()
    for stem, seed, _ in _seeds(built):
        docs = _kubeadm_documents(seed)
        if "ClusterConfiguration" not in docs:
            continue
        cluster = docs["ClusterConfiguration"]
        api_server = cluster["apiServer"]
        args = api_server["extraArgs"]
        if cluster["apiVersion"].endswith("v1beta4"):
            shapes.add("v1beta4")
            assert {"name": "encryption-provider-config", "value": CONFIG_PATH} in args, stem
        else:
            shapes.add("v1beta3")
            assert args["encryption-provider-config"] == CONFIG_PATH, stem
        [volume] = [v for v in api_server["extraVolumes"] if v["name"] == "k8sseed-encryption"]
        # The file must be inside the directory mounted into the static pod, at the same path.
        assert CONFIG_PATH.startswith(volume["hostPath"] + "/") and volume["mountPath"] == volume["hostPath"]
        assert volume["readOnly"] is True
    assert shapes == {"v1beta3", "v1beta4"}


def test_the_key_is_derived_from_the_cluster_secret_with_its_own_label(tmp_path):
    profile = REPO / "profiles" / "reference.yaml"
    secret_file = make_secret(tmp_path)
    plan = load_plan(profile, secret_file)[0]
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"k8sseed/v1/secrets-encryption-key").derive(read_secret(secret_file).key)
    assert base64.b64decode(plan.secrets_encryption_key) == expected
    assert load_plan(profile, secret_file)[0].secrets_encryption_key == plan.secrets_encryption_key
    other = load_plan(profile, make_secret(tmp_path, "other.secret"))[0]
    assert other.secrets_encryption_key != plan.secrets_encryption_key


@pytest.mark.parametrize("broken", [
    {"secretbox": {"keys": [{"name": "k", "secret": "x"}]}, "aescbc": {"keys": [{"name": "k", "secret": "eA=="}]}},
    {"secretbox": {"keys": [{"name": "k", "secret": "not base64!"}]}},
    {"secretbox": {"keys": []}},
    {"secretbox": {"keys": [{"name": "k", "secret": "eA==", "extra": 1}]}},
])
def test_the_schema_rejects_what_the_api_server_rejects(broken):
    config = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
              "resources": [{"resources": ["secrets"], "providers": [broken]}]}
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
