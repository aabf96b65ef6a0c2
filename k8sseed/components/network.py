"""The node's static network, once as data (NodeNetwork), rendered as netplan v2 for cloud-init's network-config
and as systemd-networkd files by the Ignition carrier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k8sseed.plan import ClusterPlan, NodePlan


@dataclass(frozen=True)
class NodeNetwork:
    mac: str | None
    interface_name: str | None  # rename the NIC matched by its MAC to this
    address: str  # with prefix
    gateway: str | None
    nameservers: tuple[str, ...]
    search_domains: tuple[str, ...]
    mtu: int | None


def node_network(plan: ClusterPlan, node: NodePlan) -> NodeNetwork:
    p = plan.profile
    gateway = node.node.gateway or p.gateway
    return NodeNetwork(node.node.mac, node.node.interface_name or None, str(node.node.ip),
                       str(gateway) if gateway else None, tuple(p.nameservers), tuple(p.search_domains),
                       p.mtu or None)


def netplan(network: NodeNetwork) -> dict[str, Any]:
    nic: dict[str, Any] = {"match": {"macaddress": network.mac}}
    if network.interface_name:
        nic["set-name"] = network.interface_name
    nic["addresses"] = [network.address]
    if network.gateway:
        nic["routes"] = [{"to": "0.0.0.0/0", "via": network.gateway}]
    if network.nameservers or network.search_domains:
        servers: dict[str, Any] = {}
        if network.nameservers:
            servers["addresses"] = list(network.nameservers)
        if network.search_domains:
            servers["search"] = list(network.search_domains)
        nic["nameservers"] = servers
    if network.mtu:
        nic["mtu"] = network.mtu
    return {"version": 2, "ethernets": {network.interface_name or "primary": nic}}


def network_config(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    return netplan(node_network(plan, node))
