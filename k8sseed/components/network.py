"""network-config (netplan v2): the node's static address on the MAC-matched interface."""

from __future__ import annotations

from typing import Any

from k8sseed.plan import ClusterPlan, NodePlan


def network_config(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    p = plan.profile
    nic: dict[str, Any] = {"match": {"macaddress": node.node.mac}}
    if node.node.interface_name:
        nic["set-name"] = node.node.interface_name
    nic["addresses"] = [str(node.node.ip)]
    gateway = node.node.gateway or p.gateway
    if gateway:
        nic["routes"] = [{"to": "0.0.0.0/0", "via": str(gateway)}]
    if p.nameservers or p.search_domains:
        servers: dict[str, Any] = {}
        if p.nameservers:
            servers["addresses"] = list(p.nameservers)
        if p.search_domains:
            servers["search"] = list(p.search_domains)
        nic["nameservers"] = servers
    if p.mtu:
        nic["mtu"] = p.mtu
    return {"version": 2, "ethernets": {node.node.interface_name or "primary": nic}}
