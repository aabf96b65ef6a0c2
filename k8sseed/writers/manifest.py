"""OUT/manifest.json: what was built, for people and tools; no secrets."""

from __future__ import annotations

import json
from typing import Any

from k8sseed import __version__
from k8sseed.plan import ClusterPlan


def manifest(plan: ClusterPlan, profile_sha256: str, isos: dict[str, tuple[str, str]]) -> dict[str, Any]:
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
             "iso": isos[n.name][0], "sha256": isos[n.name][1], "bootstrapOrder": n.bootstrap_order}
            for n in sorted(plan.nodes, key=lambda n: n.bootstrap_order)
        ],
    }


def manifest_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")
