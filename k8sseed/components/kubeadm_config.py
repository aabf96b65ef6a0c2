"""kubeadm, kubelet and kube-proxy configuration documents, built as data."""

from __future__ import annotations

from typing import Any

from k8sseed.components.secrets_encryption import ENCRYPTION_CONFIG, api_server_volume
from k8sseed.plan import CRI_SOCKET, ClusterPlan, NodePlan

KUBELET_API = "kubelet.config.k8s.io/v1beta1"
KUBE_PROXY_API = "kubeproxy.config.k8s.io/v1alpha1"
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def _is_v1beta4(plan: ClusterPlan) -> bool:
    return plan.facts.kubeadm_api.endswith("v1beta4")


def _args(plan: ClusterPlan, args: dict[str, str]) -> Any:
    """extraArgs: a map in v1beta3, a list of {name, value} in v1beta4."""
    if _is_v1beta4(plan):
        return [{"name": k, "value": v} for k, v in args.items()]
    return dict(args)


def _node_registration(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    kubelet_args = {"node-ip": node.node.address}
    if node.node.labels:
        kubelet_args["node-labels"] = ",".join(f"{k}={v}" for k, v in node.node.labels)
    registration: dict[str, Any] = {
        "name": node.name,
        "criSocket": CRI_SOCKET,
        "kubeletExtraArgs": _args(plan, kubelet_args),
    }
    if node.node.taints is not None:
        registration["taints"] = [
            {"key": t.key, "effect": t.effect, **({"value": t.value} if t.value is not None else {})}
            for t in node.node.taints
        ]
    return registration


def _local_endpoint(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    return {"advertiseAddress": node.node.address, "bindPort": plan.profile.cluster.api_server_port}


def _etcd(plan: ClusterPlan) -> dict[str, Any]:
    """Stacked: kubeadm's local etcd. External: the etcd nodes, with this control plane's client certificate
    (pre-placed in /etc/kubernetes/pki; kubeadm makes no etcd certificate in this topology)."""
    if not plan.external_etcd:
        return {"local": {"dataDir": "/var/lib/etcd"}}
    pki = "/etc/kubernetes/pki"
    return {"external": {"endpoints": list(plan.etcd_endpoints), "caFile": f"{pki}/etcd/ca.crt",
                         "certFile": f"{pki}/apiserver-etcd-client.crt", "keyFile": f"{pki}/apiserver-etcd-client.key"}}


def cluster_configuration(plan: ClusterPlan) -> dict[str, Any]:
    c = plan.profile.cluster
    return {
        "apiVersion": plan.facts.kubeadm_api,
        "kind": "ClusterConfiguration",
        "clusterName": c.name,
        "kubernetesVersion": f"v{c.kubernetes_version}",
        "controlPlaneEndpoint": c.control_plane_endpoint,
        "imageRepository": plan.profile.mirrors.image_repository,
        "certificatesDir": "/etc/kubernetes/pki",
        "networking": {"podSubnet": c.pod_subnet, "serviceSubnet": c.service_subnet, "dnsDomain": c.dns_domain},
        "etcd": _etcd(plan),
        # Secrets at rest: the EncryptionConfiguration every control-plane seed writes (secrets_encryption.py).
        "apiServer": {"certSANs": list(plan.api_server_sans),
                      "extraArgs": _args(plan, {"encryption-provider-config": ENCRYPTION_CONFIG}),
                      "extraVolumes": [api_server_volume()]},
        # Leader election stays on (the default) so controller-manager and scheduler fail over.
        "controllerManager": {"extraArgs": _args(plan, {"leader-elect": "true"})},
        "scheduler": {"extraArgs": _args(plan, {"leader-elect": "true"})},
    }


def bootstrap_token(plan: ClusterPlan) -> dict[str, Any]:
    """The token kubeadm init creates: the build window's, or the profile's single token with its ttl.

    A window token must end at an absolute time every seed of the build agrees on, but a kubeadm config cannot
    say so: kubeadm fills in the default ttl (24h) before it validates, then refuses `expires` beside it ("the
    BootstrapToken .TTL and .Expires fields are mutually exclusive"; bootstraptoken/v1 SetDefaults_BootstrapToken
    and ValidateBootstrapTokens, every release from 1.24 to 1.36). So init creates it with a ttl of two windows,
    the longest a window token lives, and the bootstrap pins its end right after init (init_token_env)."""
    window = plan.window_token
    ttl = f"{2 * window.window // 3600}h" if window else plan.profile.cluster.bootstrap_token_ttl
    description = ("k8sseed join token of the build's time window, derived from the cluster secret" if window
                   else "k8sseed join token, derived from the cluster secret")
    return {"token": plan.bootstrap_token, "description": description, "ttl": ttl,
            "usages": ["signing", "authentication"], "groups": [TOKEN_GROUP]}


def init_token_env(plan: ClusterPlan) -> tuple[tuple[str, str], ...]:
    """For the init node: the window token's id and the end the bootstrap gives it after kubeadm init."""
    window = plan.window_token
    if window is None:
        return ()
    return (("K8SSEED_INIT_TOKEN_ID", window.token.split(".")[0]),
            ("K8SSEED_INIT_TOKEN_EXPIRES", window.expires_rfc3339))


# kubeadm 1.36's wait-control-plane phase asks for its admin client before it waits for the control plane, and
# gives up when the first API server is not serving within timeouts.kubernetesAPICall (default 1m): a slow first
# start (small or virtualised machines, a cold disk) fails init with "cannot obtain client without bootstrap"
# (found by the real VM run; kubernetes/kubeadm#3320). v1beta4 lets the config wait longer; v1beta3 has no such field.
SLOW_START_TIMEOUTS = {"controlPlaneComponentHealthCheck": "10m0s", "kubernetesAPICall": "5m0s"}


def _timeouts(plan: ClusterPlan) -> dict[str, Any]:
    return {"timeouts": dict(SLOW_START_TIMEOUTS)} if plan.facts.kubeadm_api.endswith("/v1beta4") else {}


def init_configuration(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    return {
        "apiVersion": plan.facts.kubeadm_api,
        "kind": "InitConfiguration",
        "bootstrapTokens": [bootstrap_token(plan)],
        "nodeRegistration": _node_registration(plan, node),
        "localAPIEndpoint": _local_endpoint(plan, node),
        **_timeouts(plan),
    }


def join_configuration(plan: ClusterPlan, node: NodePlan, as_control_plane: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": plan.facts.kubeadm_api,
        "kind": "JoinConfiguration",
        "nodeRegistration": _node_registration(plan, node),
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": plan.profile.cluster.control_plane_endpoint,
            "token": plan.bootstrap_token,
            "caCertHashes": [plan.pki.ca_cert_hash],
        }},
    }
    if as_control_plane:
        # The shared CA and SA keys are pre-placed in /etc/kubernetes/pki: no certificateKey needed.
        doc["controlPlane"] = {"localAPIEndpoint": _local_endpoint(plan, node)}
    doc.update(_timeouts(plan))
    return doc


def kubelet_configuration(plan: ClusterPlan) -> dict[str, Any]:
    # rotateCertificates: the kubelet renews its client certificate through the CSR API (kube-controller-manager
    # approves and signs those). serverTLSBootstrap stays off: its kubelet-serving CSRs need an approver that
    # Kubernetes does not ship (README: certificates over time).
    return {"apiVersion": KUBELET_API, "kind": "KubeletConfiguration", "cgroupDriver": "systemd",
            "rotateCertificates": True}


def kube_proxy_configuration(plan: ClusterPlan) -> dict[str, Any]:
    p = plan.profile
    doc: dict[str, Any] = {"apiVersion": KUBE_PROXY_API, "kind": "KubeProxyConfiguration",
                           "mode": p.kube_proxy_mode, "clusterCIDR": p.cluster.pod_subnet}
    if p.kube_proxy_mode == "ipvs":
        ipvs: dict[str, Any] = {"scheduler": p.ipvs.scheduler, "strictARP": p.ipvs.strict_arp}
        for key, value in (("tcpTimeout", p.ipvs.tcp_timeout), ("tcpFinTimeout", p.ipvs.tcp_fin_timeout),
                           ("udpTimeout", p.ipvs.udp_timeout)):
            if value is not None:
                ipvs[key] = value
        doc["ipvs"] = ipvs
    return doc


def init_documents(plan: ClusterPlan, node: NodePlan) -> list[dict[str, Any]]:
    return [init_configuration(plan, node), cluster_configuration(plan), kubelet_configuration(plan),
            kube_proxy_configuration(plan)]

