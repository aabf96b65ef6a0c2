"""NodeSeed: one node's user-data, meta-data and network-config, from the components."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from k8sseed.carriers import cloud_init, ignition
from k8sseed.components import Component, NodeFragment
from k8sseed.components.addons import addons_fragment
from k8sseed.components.apt_repositories import apt_repositories_fragment
from k8sseed.components.bird import bird_fragment
from k8sseed.components.bootstrap import bootstrap_fragment, env_file
from k8sseed.components.cert_renewal import cert_renewal_fragment
from k8sseed.components.etcd_membership import etcd_membership_fragment
from k8sseed.components.external_etcd import external_etcd_fragment
from k8sseed.components.join_tokens import join_tokens_fragment
from k8sseed.components.keepalived_haproxy import keepalived_haproxy_fragment
from k8sseed.components.kubernetes import kubernetes_fragment
from k8sseed.components.load_balancer import load_balancer_fragment
from k8sseed.components.network import netplan, node_network
from k8sseed.components.os_prep import os_prep_fragment
from k8sseed.components.runtime import registry_trust_fragment, runtime_fragment
from k8sseed.components.secrets_encryption import secrets_encryption_fragment
from k8sseed.components.sysext import sysext_fragment
from k8sseed.components.system import system_fragment
from k8sseed.node_config import NodeConfig, merge_fragments
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.yamltext import dump

COMPONENTS: tuple[Component, ...] = (
    system_fragment,
    os_prep_fragment,
    apt_repositories_fragment,
    registry_trust_fragment,
    runtime_fragment,
    kubernetes_fragment,
    secrets_encryption_fragment,
    etcd_membership_fragment,
    external_etcd_fragment,
    load_balancer_fragment,
    bird_fragment,
    sysext_fragment,  # Flatcar: the images BIRD comes from
    keepalived_haproxy_fragment,
    addons_fragment,
    bootstrap_fragment,
    cert_renewal_fragment,
    join_tokens_fragment,  # after the bootstrap's daemon-reload: its runcmd enables the timer
)
# An external etcd member is no Kubernetes node: host identity, etcd, and the bootstrap that starts it.
ETCD_COMPONENTS: tuple[Component, ...] = (system_fragment, registry_trust_fragment, external_etcd_fragment,
                                          bootstrap_fragment)


@dataclass(frozen=True)
class NodeSeed:
    name: str
    user_data: bytes
    meta_data: bytes
    network_config: bytes

    def files(self) -> tuple[tuple[str, bytes], ...]:
        return (("user-data", self.user_data), ("meta-data", self.meta_data),
                ("network-config", self.network_config))


def node_config(plan: ClusterPlan, node: NodePlan) -> NodeConfig:
    """What the node needs, from every component, before any carrier renders it."""
    components = ETCD_COMPONENTS if node.node.is_etcd else COMPONENTS
    fragments: list[NodeFragment] = [component(plan, node) for component in components]
    return merge_fragments(fragments, env_file(tuple(pair for f in fragments for pair in f.env)))


def user_data_dict(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    return cloud_init.user_data_dict(node_config(plan, node))


def user_data_text(plan: ClusterPlan, node: NodePlan) -> str:
    return cloud_init.user_data_text(node_config(plan, node))


def build_seed(plan: ClusterPlan, node: NodePlan) -> NodeSeed:
    user_data = user_data_text(plan, node).encode("utf-8")
    network = dump(netplan(node_network(plan, node))).encode("utf-8")
    digest = hashlib.sha256(user_data + b"\0" + network).hexdigest()[:16]
    meta = dump({"instance-id": f"k8sseed-{node.name}-{digest}", "local-hostname": node.name}).encode("utf-8")
    return NodeSeed(node.name, user_data, meta, network)


def build_ignition(plan: ClusterPlan, node: NodePlan) -> bytes:
    """The node's Ignition config (OUT/<node>.ign): the same NodeConfig and network as its NoCloud seed."""
    return ignition.ignition_bytes(node_config(plan, node), node_network(plan, node))
