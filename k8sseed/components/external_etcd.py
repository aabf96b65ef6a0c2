"""External etcd (cluster.topology external-etcd): each etcd node runs etcd as a systemd service from a config
file built here, and control planes reach it with their own client certificate after waiting for its quorum."""

from __future__ import annotations

from typing import Any

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.components.kubernetes import PKI_DIR
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render, render_static
from k8sseed.yamltext import dump_all

MEMBER_SCRIPT = "/usr/local/sbin/k8sseed-etcd-member"
ETCD_DIR = "/etc/k8sseed/etcd"
ETCD_PKI = f"{ETCD_DIR}/pki"
DATA_DIR = "/var/lib/etcd"
UNIT_PATH = "/etc/systemd/system/k8sseed-etcd.service"
# Written from the seed's config by `k8sseed-etcd-member prepare` before every start (the unit's --config-file).
RUN_CONFIG = "/run/k8sseed-etcd/etcd.yaml"


def initial_cluster(plan: ClusterPlan) -> str:
    return ",".join(f"{n.name}={plan.etcd_peer_url(n)}" for n in plan.etcd_nodes)


def etcd_config(plan: ClusterPlan, node: NodePlan, state: str) -> dict[str, Any]:
    """etcd's YAML config file (--config-file): keys that etcd 3.4 and 3.5 both read the same way. With a config
    file etcd ignores its flags and ETCD_* variables, so everything is here."""
    def tls(stem: str) -> dict[str, Any]:
        return {"cert-file": f"{ETCD_PKI}/{stem}.crt", "key-file": f"{ETCD_PKI}/{stem}.key",
                "trusted-ca-file": f"{ETCD_PKI}/ca.crt", "client-cert-auth": True}

    return {
        "name": node.name,
        "data-dir": DATA_DIR,
        "listen-peer-urls": plan.etcd_peer_url(node),
        "listen-client-urls": plan.etcd_client_url(node),
        "initial-advertise-peer-urls": plan.etcd_peer_url(node),
        "advertise-client-urls": plan.etcd_client_url(node),
        "initial-cluster": initial_cluster(plan),
        "initial-cluster-token": f"{plan.profile.cluster.name}-etcd",
        "initial-cluster-state": state,
        "client-transport-security": tls("server"),
        "peer-transport-security": tls("peer"),
        # Refuse a membership change that would cost quorum (the default, written down).
        "strict-reconfig-check": True,
        # The JSON gateway k8sseed-etcd-member uses (member list/add/remove with curl): on by default for flags,
        # but off when etcd reads a config file (measured with etcd 3.4.23: 404 on /v3/cluster/member/list).
        "enable-grpc-gateway": True,
    }


def _member_args(plan: ClusterPlan, node: NodePlan) -> tuple[str, ...]:
    """prepare's arguments: this member first, then every member of the profile, as NAME IP pairs."""
    pairs = [node, *plan.etcd_nodes]
    return tuple(value for n in pairs for value in (n.name, n.node.address))


def _etcd_node_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    certs = plan.etcd_certs_for(node)
    etcd = plan.profile.etcd
    assert etcd is not None  # external-etcd profiles always have it (model.build_model)
    return NodeFragment(
        files=(
            NodeFile(f"{ETCD_PKI}/ca.crt", plan.pki.etcd_ca.cert_pem),
            NodeFile(f"{ETCD_PKI}/server.crt", certs.server.cert_pem),
            NodeFile(f"{ETCD_PKI}/server.key", certs.server.key_pem, "0600"),
            NodeFile(f"{ETCD_PKI}/peer.crt", certs.peer.cert_pem),
            NodeFile(f"{ETCD_PKI}/peer.key", certs.peer.key_pem, "0600"),
            NodeFile(f"{ETCD_DIR}/etcd-new.yaml", dump_all([etcd_config(plan, node, "new")])),
            NodeFile(f"{ETCD_DIR}/etcd-existing.yaml", dump_all([etcd_config(plan, node, "existing")])),
            NodeFile(UNIT_PATH, render("k8sseed-etcd.service.j2", name=node.name, cluster=plan.profile.cluster.name,
                                       members=_member_args(plan, node))),
            NodeFile(MEMBER_SCRIPT, render_static("k8sseed-etcd-member.sh.j2"), "0755"),
        ),
        env=(
            ("K8SSEED_DUTY", node.duty.value),
            ("K8SSEED_ETCD_VERSION", etcd.version),
            ("K8SSEED_ETCD_URL", etcd.mirror.format(version=etcd.version, arch=node.node.arch)),
            ("K8SSEED_ETCD_SHA256", etcd.sha256_for(node.node.arch) or ""),
            ("K8SSEED_JOIN_TIMEOUT", str(plan.profile.cluster.join_timeout_seconds)),
        ),
    )


def _control_plane_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    client = plan.etcd_client_cert_for(node)
    members = plan.etcd_nodes
    return NodeFragment(
        files=(
            NodeFile(f"{PKI_DIR}/apiserver-etcd-client.crt", client.cert_pem),
            NodeFile(f"{PKI_DIR}/apiserver-etcd-client.key", client.key_pem, "0600"),
            NodeFile(MEMBER_SCRIPT, render_static("k8sseed-etcd-member.sh.j2"), "0755"),
        ),
        env=(
            ("K8SSEED_ETCD_MEMBER_IPS", tuple(n.node.address for n in members)),
            ("K8SSEED_ETCD_QUORUM", str(len(members) // 2 + 1)),
        ),
    )


def external_etcd_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if not plan.external_etcd:
        return NodeFragment()
    if node.node.is_etcd:
        return _etcd_node_fragment(plan, node)
    if node.node.is_control_plane:
        return _control_plane_fragment(plan, node)
    return NodeFragment()
