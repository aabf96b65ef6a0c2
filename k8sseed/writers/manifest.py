"""OUT/manifest.json: what was built, for people and tools; no secrets. The next build reads it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from k8sseed import __version__
from k8sseed.errors import OutputError
from k8sseed.plan import ClusterPlan
from k8sseed.profile.model import Node

NAME = "manifest.json"
SEED_FILES = ("user-data", "meta-data", "network-config")


def manifest(plan: ClusterPlan, profile_sha256: str, isos: dict[str, tuple[str | None, str | None]],
             seed_sha256: dict[str, dict[str, str]], files: list[str],
             ignition: dict[str, str] | None = None) -> dict[str, Any]:
    """`seed_sha256`: node -> seed file -> sha256; `files`: every path the build wrote under OUT; `ignition`:
    node -> its Ignition config's name under OUT (builds with --format ignition or all)."""
    ignition = ignition or {}
    p = plan.profile
    return {
        "k8sseedVersion": __version__,
        "profileSha256": profile_sha256,
        "clusterName": p.cluster.name,
        "kubernetesVersion": p.cluster.kubernetes_version,
        "controlPlaneEndpoint": p.cluster.control_plane_endpoint,
        "topology": p.cluster.topology,
        "lbMode": p.lb_mode,
        "caCertHash": plan.pki.ca_cert_hash,
        "bgp": None if p.bgp is None else {
            "asNumber": p.bgp.as_number,
            "peers": [{"name": peer.name, "address": str(peer.address), "asNumber": peer.as_number,
                       "configs": [f"router/{peer.name}.bird.conf", f"router/{peer.name}.frr.conf"]}
                      for peer in p.bgp.peers],
        },
        "nodes": [
            {"name": n.name, "role": n.node.role.value, "duty": n.duty.value, "ip": str(n.node.ip), "mac": n.node.mac,
             "iso": isos[n.name][0], "sha256": isos[n.name][1], "bootstrapOrder": n.bootstrap_order,
             "seedSha256": seed_sha256[n.name], **({"ignition": ignition[n.name]} if n.name in ignition else {}),
             **_bmc(n.node)}
            for n in sorted(plan.nodes, key=lambda n: n.bootstrap_order)
        ],
        "files": sorted([NAME, *files]),
    }


def _bmc(node: Node) -> dict[str, Any]:
    """The node's BMC for `k8sseed attach`, only where the profile gives one (other manifests stay as they were)."""
    if node.bmc is None:
        return {}
    return {"bmc": {"redfish": node.bmc.redfish, **({"systemId": node.bmc.system_id} if node.bmc.system_id else {})}}


def manifest_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of the build now in OUT; None when OUT holds none."""
    path = out / NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputError(f"{path} is not a readable k8sseed manifest ({getattr(exc, 'strerror', None) or 'not JSON'});"
                          " k8sseed cannot tell what it would replace: choose another -o directory") from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise OutputError(f"{path} is not a k8sseed manifest (no node list); k8sseed cannot tell what it would "
                          "replace: choose another -o directory")
    return data


def _nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in data.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("name"), str)]


def written_paths(data: dict[str, Any]) -> set[str]:
    """What the build that wrote this manifest put into OUT (directories end in '/')."""
    if isinstance(data.get("files"), list):
        files = {f for f in data["files"] if isinstance(f, str)}
    else:  # manifests written before the "files" field: the fixed layout of DESIGN §3
        files = {NAME}
        for node in _nodes(data):
            files |= {f"{node['name']}.iso", *(f"{node['name']}/{name}" for name in SEED_FILES)}
        peers = (data.get("bgp") or {}).get("peers") or []
        for peer in peers:
            files |= {c for c in peer.get("configs", []) if isinstance(c, str)}
        if peers:
            files.add("router/README.md")
    folders = {"/".join(f.split("/")[:i]) + "/" for f in files for i in range(1, f.count("/") + 1)}
    return files | folders


def node_changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, str]:
    """Node name -> 'new' | 'changed' | 'unchanged', comparing each node's seed files with the previous build."""
    before = {n["name"]: n for n in _nodes(previous)} if previous else {}
    changes = {}
    for node in current["nodes"]:
        old = before.get(node["name"])
        if old is None:
            changes[node["name"]] = "new"
        elif isinstance(old.get("seedSha256"), dict):
            changes[node["name"]] = "unchanged" if old["seedSha256"] == node["seedSha256"] else "changed"
        else:  # an older manifest: the ISO's hash (it also moves with SOURCE_DATE_EPOCH)
            changes[node["name"]] = "unchanged" if old.get("sha256") == node["sha256"] else "changed"
    return changes


def removed_nodes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    now = {n["name"] for n in current["nodes"]}
    return sorted(n["name"] for n in _nodes(previous) if n["name"] not in now) if previous else []
