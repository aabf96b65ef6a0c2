"""Calico and PureLB resources: valid against the CRD schemas, and shaped as the design needs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from conftest import PROFILES, node_dirs


def _files(seed_dir: Path) -> dict[str, str]:
    data = yaml.safe_load((seed_dir / "user-data").read_text())
    return {f["path"]: f["content"] for f in data["write_files"]}


def _addon_docs(out: Path) -> list[dict]:
    docs = []
    for seed in node_dirs(out):
        for path, content in _files(seed).items():
            if path.startswith("/etc/k8sseed/addons/"):
                docs += [d for d in yaml.safe_load_all(content) if d]
    return docs


def test_every_calico_and_purelb_resource_passes_its_crd_schema(built, upstream_index):
    checked = set()
    for out in built.values():
        for doc in _addon_docs(out):
            key = (doc["apiVersion"], doc["kind"])
            if key == ("v1", "ConfigMap"):
                continue
            assert key in upstream_index, f"no CRD schema for {key}"
            schema = json.loads(upstream_index[key].read_text())
            errors = [f"{list(e.absolute_path)}: {e.message}"
                      for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
            assert not errors, f"{key}: {errors}"
            checked.add(key)
    assert {("operator.tigera.io/v1", "Installation"), ("crd.projectcalico.org/v1", "BGPConfiguration"),
            ("crd.projectcalico.org/v1", "BGPPeer"), ("crd.projectcalico.org/v1", "IPPool"),
            ("purelb.io/v2", "ServiceGroup"), ("purelb.io/v2", "LBNodeAgent")} <= checked


def test_only_the_init_node_installs_addons(built):
    out = built["reference"]
    holders = [d.name for d in node_dirs(out) if "/etc/k8sseed/addons/calico-installation.yaml"
               in _files(d)]
    assert holders == ["cp-1"]


def test_calico_listens_beside_the_host_bird_and_peers_with_it(built):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _addon_docs(built["reference"])}
    bgp = docs[("BGPConfiguration", "default")]["spec"]
    assert bgp["listenPort"] == 1790 and bgp["asNumber"] == 64512
    assert bgp["nodeToNodeMeshEnabled"] is False
    assert bgp["serviceLoadBalancerIPs"] == [{"cidr": "10.30.0.0/24"}]
    peer = docs[("BGPPeer", "k8sseed-host-bird")]["spec"]
    assert peer == {"peerIP": "127.0.0.1:179", "asNumber": 64512, "sourceAddress": "UseNodeIP"}


def test_purelb_pool_is_exported_by_calico_through_a_disabled_ippool(built):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _addon_docs(built["reference"])}
    pool = docs[("IPPool", "purelb-default")]["spec"]
    assert pool["cidr"] == "10.30.0.0/24" and pool["disabled"] is True
    group = docs[("ServiceGroup", "default")]
    assert group["metadata"]["namespace"] == "purelb-system"
    assert group["spec"] == {"remote": {"v4pools": [{"subnet": "10.30.0.0/24", "pool": "10.30.0.10-10.30.0.250",
                                                     "aggregation": "/32"}]}}


def test_calico_pod_pool_and_autodetection_follow_the_profile(built):
    installs = {stem: next(d for d in _addon_docs(out) if d["kind"] == "Installation")
                for stem, out in built.items()}
    ref = installs["reference"]["spec"]["calicoNetwork"]
    assert ref["bgp"] == "Enabled"
    assert ref["ipPools"][0]["cidr"] == "192.168.0.0/16" and ref["ipPools"][0]["encapsulation"] == "None"
    assert ref["nodeAddressAutodetectionV4"] == {"cidrs": ["10.20.0.0/24"]}
    solo = installs["single-node"]["spec"]["calicoNetwork"]
    assert solo["bgp"] == "Disabled" and solo["ipPools"][0]["encapsulation"] == "VXLAN"


def test_calico_images_come_from_the_profiles_registry_mirror(built):
    def registry(stem: str) -> str | None:
        install = next(d for d in _addon_docs(built[stem]) if d["kind"] == "Installation")
        return install["spec"].get("registry")

    assert registry("current") == "harbor.lab.example.com:5000/"  # the operator's form: with the trailing slash
    assert registry("reference") is None  # no mirror: the operator's default registries


def test_calico_version_follows_the_kubernetes_minor(built):
    def env(out: Path) -> str:
        init = next(d for d in node_dirs(out) if "/etc/k8sseed/kubeadm-init.yaml" in _files(d))
        return _files(init)["/etc/k8sseed/node.env"]

    assert "K8SSEED_CALICO_VERSION=3.25.2" in env(built["reference"])
    assert ("K8SSEED_CALICO_OPERATOR_URL=https://raw.githubusercontent.com/projectcalico/calico/v3.25.2/manifests/"
            "tigera-operator.yaml") in env(built["reference"])
    assert "K8SSEED_CALICO_VERSION=3.32.1" in env(built["current"])


def test_example_profiles_cover_every_endpoint_mode():
    modes = {yaml.safe_load(p.read_text()).get("controlPlaneLB", {}).get("mode", "external")
             for p in PROFILES.glob("*.yaml")}
    assert modes == {"bgp", "keepalived-haproxy", "external"}
