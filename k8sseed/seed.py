"""NodeSeed: one node's user-data, meta-data and network-config, from the components."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from k8sseed.components import Component, NodeFile, NodeFragment
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
from k8sseed.components.network import network_config
from k8sseed.components.os_prep import os_prep_fragment
from k8sseed.components.runtime import runtime_fragment
from k8sseed.components.secrets_encryption import secrets_encryption_fragment
from k8sseed.components.system import system_fragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.yamltext import dump, dump_mapping, dump_memoised

COMPONENTS: tuple[Component, ...] = (
    system_fragment,
    os_prep_fragment,
    apt_repositories_fragment,
    runtime_fragment,
    kubernetes_fragment,
    secrets_encryption_fragment,
    etcd_membership_fragment,
    external_etcd_fragment,
    load_balancer_fragment,
    bird_fragment,
    keepalived_haproxy_fragment,
    addons_fragment,
    bootstrap_fragment,
    cert_renewal_fragment,
    join_tokens_fragment,  # after the bootstrap's daemon-reload: its runcmd enables the timer
)
# An external etcd member is no Kubernetes node: host identity, etcd, and the bootstrap that starts it.
ETCD_COMPONENTS: tuple[Component, ...] = (system_fragment, external_etcd_fragment, bootstrap_fragment)


@dataclass(frozen=True)
class NodeSeed:
    name: str
    user_data: bytes
    meta_data: bytes
    network_config: bytes

    def files(self) -> tuple[tuple[str, bytes], ...]:
        return (("user-data", self.user_data), ("meta-data", self.meta_data),
                ("network-config", self.network_config))


def _unique_files(files: list[NodeFile]) -> list[NodeFile]:
    seen: dict[str, NodeFile] = {}
    for f in files:
        if f.path in seen and seen[f.path] != f:
            raise ValueError(f"two components write {f.path}")
        seen[f.path] = f
    return list(seen.values())


def _file_entry(f: NodeFile) -> dict[str, Any]:
    return {"path": f.path, "content": f.content, "owner": "root:root", "permissions": f.permissions}


@functools.lru_cache(maxsize=512)
def _file_entry_yaml(f: NodeFile) -> str:
    """One write_files entry as a YAML sequence item. Most entries (the bootstrap script, units, templates) are
    the same on every node: they are dumped once per build instead of once per node."""
    return dump([_file_entry(f)])


@dataclass(frozen=True)
class _UserData:
    head: dict[str, Any]  # the components' cloud-config keys, in component order
    files: list[NodeFile]
    runcmd: list[list[str]]


def _collect(plan: ClusterPlan, node: NodePlan) -> _UserData:
    components = ETCD_COMPONENTS if node.node.is_etcd else COMPONENTS
    fragments: list[NodeFragment] = [component(plan, node) for component in components]
    config: dict[str, Any] = {}
    files: list[NodeFile] = []
    env: list[tuple[str, str | tuple[str, ...]]] = []
    runcmd: list[list[str]] = []
    for fragment in fragments:
        overlap = set(config) & set(fragment.cloud_config)
        if overlap:
            raise ValueError(f"components disagree on cloud-config keys {sorted(overlap)}")
        config.update(fragment.cloud_config)
        files.extend(fragment.files)
        env.extend(fragment.env)
        runcmd.extend(list(cmd) for cmd in fragment.runcmd)
    files.append(env_file(tuple(env)))
    for key in ("write_files", "runcmd"):
        if key in config:
            raise ValueError(f"a component sets {key} directly")
    return _UserData(config, _unique_files(files), runcmd)


def user_data_dict(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    parts = _collect(plan, node)
    return {**parts.head, "write_files": [_file_entry(f) for f in parts.files], "runcmd": parts.runcmd}


def user_data_text(plan: ClusterPlan, node: NodePlan) -> str:
    """`#cloud-config` + the YAML of user_data_dict, byte for byte (a test holds it to that), with the
    write_files entries dumped through a cache."""
    parts = _collect(plan, node)
    return ("#cloud-config\n" + dump_mapping(parts.head) + "write_files:\n"
            + "".join(_file_entry_yaml(f) for f in parts.files) + dump_memoised({"runcmd": parts.runcmd}))


def build_seed(plan: ClusterPlan, node: NodePlan) -> NodeSeed:
    user_data = user_data_text(plan, node).encode("utf-8")
    network = dump(network_config(plan, node)).encode("utf-8")
    digest = hashlib.sha256(user_data + b"\0" + network).hexdigest()[:16]
    meta = dump({"instance-id": f"k8sseed-{node.name}-{digest}", "local-hostname": node.name}).encode("utf-8")
    return NodeSeed(node.name, user_data, meta, network)
