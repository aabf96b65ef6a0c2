"""Phase 6, addons (init node only): Calico through the Tigera operator, its BGP resources, and PureLB.

Calico's BGP resources are written in Calico's user API (projectcalico.org/v3) with calicoctl, which validates and
defaults them client-side and needs no Calico API server (that runs as pods, after calico-node). The bootstrap
applies them after the operator's CRDs exist and before the Installation, so calico-node's first BIRD already
listens on bgp.calicoListenPort and the host BIRD keeps TCP 179.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources
from typing import Any

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, Duty, NodePlan
from k8sseed.profile.model import LBPool
from k8sseed.yamltext import dump_all

CALICO_API = "projectcalico.org/v3"  # Calico's user API: calicoctl (or native v3 CRDs) validates and defaults it
PURELB_API = "purelb.io/v2"
PURELB_NAMESPACE = "purelb-system"
HOST_BIRD_PEER = "127.0.0.1:179"
ADDONS_DIR = "/etc/k8sseed/addons"
CALICOCTL_CONFIG = f"{ADDONS_DIR}/calicoctl.cfg"
ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"
REWRITE_IMAGES_PATH = "/usr/local/sbin/k8sseed-rewrite-images"


def _node_networks(plan: ClusterPlan) -> list[ipaddress.IPv4Network]:
    return sorted({n.node.ip.network for n in plan.nodes})


def pool_is_local(plan: ClusterPlan, pool: LBPool) -> bool:
    """In a node subnet: PureLB answers ARP for it; elsewhere it goes on kube-lb0 and BGP carries it."""
    return any(pool.subnet.subnet_of(net) or net.subnet_of(pool.subnet) for net in _node_networks(plan))


def calico_installation(plan: ClusterPlan) -> dict[str, Any]:
    c, calico = plan.profile.cluster, plan.profile.calico
    spec: dict[str, Any] = {
        "calicoNetwork": {
            "bgp": "Enabled" if plan.profile.bgp else "Disabled",
            "ipPools": [{
                "cidr": c.pod_subnet,
                "blockSize": calico.block_size,
                "encapsulation": plan.calico_encapsulation,
                "natOutgoing": "Enabled" if calico.nat_outgoing else "Disabled",
                "nodeSelector": "all()",
            }],
            # The Node's InternalIP, which kubelet registers as the profile's address (--node-ip): never a VIP
            # that keepalived or vip-health added to the same NIC, which a subnet match could pick.
            "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"},
        },
    }
    registry = plan.profile.mirrors.calico_registry
    if registry:
        spec["registry"] = registry + "/"  # the operator wants the trailing slash
    return {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
            "spec": spec}


def _remote_pools(plan: ClusterPlan) -> list[LBPool]:
    p = plan.profile
    return [pool for pool in p.purelb.pools if p.purelb.enabled and not pool_is_local(plan, pool)]


def calico_bgp_resources(plan: ClusterPlan) -> list[dict[str, Any]]:
    """Applied before the Installation: calico-node reads them when its BGP daemon first starts."""
    bgp, calico, p = plan.profile.bgp, plan.profile.calico, plan.profile
    if bgp is None:
        return []
    remote_pools = _remote_pools(plan)
    spec: dict[str, Any] = {
        "asNumber": bgp.as_number,
        "nodeToNodeMeshEnabled": calico.node_to_node_mesh,
        # The host BIRD owns TCP 179; calico-node's BIRD listens here and peers with it over loopback.
        "listenPort": bgp.calico_listen_port,
        "logSeverityScreen": "Info",
    }
    if calico.advertise_service_cluster_ips:
        spec["serviceClusterIPs"] = [{"cidr": p.cluster.service_subnet}]
    if calico.service_external_ips:
        spec["serviceExternalIPs"] = [{"cidr": cidr} for cidr in calico.service_external_ips]
    if remote_pools:
        spec["serviceLoadBalancerIPs"] = [{"cidr": str(pool.subnet)} for pool in remote_pools]
    return [
        {"apiVersion": CALICO_API, "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec},
        {"apiVersion": CALICO_API, "kind": "BGPPeer", "metadata": {"name": "k8sseed-host-bird"},
         "spec": {"peerIP": HOST_BIRD_PEER, "asNumber": bgp.as_number, "sourceAddress": "UseNodeIP"}},
    ]


def calico_export_pools(plan: ClusterPlan) -> list[dict[str, Any]]:
    """PureLB's recipe for Calico: a disabled pool makes Calico's BIRD export the range on kube-lb0.

    Applied once Calico is available: an IPv4 pool that exists before calico-node first starts keeps older
    Calico (< 3.28) from creating the Installation's pod pool.
    """
    if plan.profile.bgp is None:
        return []
    return [{"apiVersion": CALICO_API, "kind": "IPPool", "metadata": {"name": f"purelb-{pool.name}"},
             "spec": {"cidr": str(pool.subnet), "disabled": True, "ipipMode": "Never", "vxlanMode": "Never",
                      "natOutgoing": False}}
            for pool in _remote_pools(plan)]


def calicoctl_config() -> dict[str, Any]:
    """calicoctl in Kubernetes datastore mode, through the admin kubeconfig kubeadm wrote."""
    return {"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig", "metadata": {},
            "spec": {"datastoreType": "kubernetes", "kubeconfig": ADMIN_KUBECONFIG}}


def rewrite_images_script() -> str:
    return resources.files("k8sseed").joinpath("nodescripts/rewrite_image_registries.py").read_text("utf-8")


def purelb_resources(plan: ClusterPlan) -> list[dict[str, Any]]:
    purelb = plan.profile.purelb
    if not purelb.enabled:
        return []
    docs: list[dict[str, Any]] = [{
        "apiVersion": PURELB_API, "kind": "LBNodeAgent",
        "metadata": {"name": "default", "namespace": PURELB_NAMESPACE},
        "spec": {"local": {"localInterface": "default", "dummyInterface": "kube-lb0"}},
    }]
    for pool in purelb.pools:
        address_pool = {"subnet": str(pool.subnet), "pool": pool.range or str(pool.subnet),
                        "aggregation": pool.aggregation}
        kind = "local" if pool_is_local(plan, pool) else "remote"
        docs.append({"apiVersion": PURELB_API, "kind": "ServiceGroup",
                     "metadata": {"name": pool.name, "namespace": PURELB_NAMESPACE},
                     "spec": {kind: {"v4pools": [address_pool]}}})
    return docs


def ready_marker(plan: ClusterPlan) -> dict[str, Any]:
    """Applied last: its presence tells people and tools that the addons are in."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "k8sseed-bootstrap", "namespace": "kube-system"},
            "data": {"addons": "done", "calicoVersion": plan.calico_version,
                     "purelb": plan.profile.purelb.version if plan.profile.purelb.enabled else "disabled"}}


def addons_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if node.duty is not Duty.INIT:
        return NodeFragment()
    p = plan.profile
    files = [NodeFile(f"{ADDONS_DIR}/calico-installation.yaml", dump_all([calico_installation(plan)])),
             NodeFile(f"{ADDONS_DIR}/ready.yaml", dump_all([ready_marker(plan)]))]
    bgp_docs = calico_bgp_resources(plan)
    if bgp_docs:
        files.append(NodeFile(f"{ADDONS_DIR}/calico-bgp.yaml", dump_all(bgp_docs)))
        files.append(NodeFile(CALICOCTL_CONFIG, dump_all([calicoctl_config()])))
    pool_docs = calico_export_pools(plan)
    if pool_docs:
        files.append(NodeFile(f"{ADDONS_DIR}/calico-ippools.yaml", dump_all(pool_docs)))
    purelb_docs = purelb_resources(plan)
    if purelb_docs:
        files.append(NodeFile(f"{ADDONS_DIR}/purelb.yaml", dump_all(purelb_docs)))
    if p.mirrors.image_registries:
        files.append(NodeFile(f"{ADDONS_DIR}/image-registries.json",
                              json.dumps(dict(p.mirrors.image_registries), indent=2, sort_keys=True) + "\n"))
        files.append(NodeFile(REWRITE_IMAGES_PATH, rewrite_images_script(), "0755"))
    version = p.purelb.version
    return NodeFragment(
        files=tuple(files),
        env=(
            ("K8SSEED_CALICO_VERSION", plan.calico_version),
            ("K8SSEED_CALICO_OPERATOR_URL", p.mirrors.calico_operator.format(version=plan.calico_version)),
            ("K8SSEED_CALICOCTL_URL", p.mirrors.calicoctl.format(version=plan.calico_version, arch=node.node.arch)),
            ("K8SSEED_CALICOCTL_SHA256", p.calico.calicoctl_sha256 or ""),
            ("K8SSEED_PURELB", "yes" if p.purelb.enabled else "no"),
            ("K8SSEED_PURELB_CRDS_URL", p.mirrors.purelb_crds.format(version=version) if p.purelb.enabled else ""),
            ("K8SSEED_PURELB_URL", p.mirrors.purelb.format(version=version) if p.purelb.enabled else ""),
        ),
    )
