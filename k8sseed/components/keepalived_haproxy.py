"""Phase 4, keepalived-haproxy mode: Keepalived (VRRP, unicast) holds the VIP on one control-plane node and
HAProxy on every control-plane node balances VIP:haproxyPort over all API servers (kubeadm ha-considerations)."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT = "/etc/keepalived/check_apiserver.sh"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
CLUSTER_CA = "/etc/k8sseed/cluster-ca.crt"  # written by the kubernetes component on every node

# The init node gets TOP_PRIORITY, the next control plane one less, and so on. A failing check subtracts
# CHECK_WEIGHT, which must exceed the whole spread so that any healthy node outranks any failing one; when
# every check fails (before the first kubeadm init) the base order decides and the init node holds the VIP.
TOP_PRIORITY = 150
CHECK_WEIGHT = 50
CHECK_CURL_SECONDS = 2  # curl --max-time; keepalived kills the script one second later
# HAProxy's idle limits. Client and server (the kubeadm HA guide's 35 s) apply until the TCP connection is
# forwarded; from then on it is a tunnel and `timeout tunnel` replaces both. Long-lived API sessions sit idle
# far longer than 35 s: `kubectl exec -it` and `logs -f` on a quiet pod, and watches, which the API server
# itself ends after --min-request-timeout (1800 s) to twice that. One hour outlasts every watch and still
# reaps connections whose peer vanished.
CLIENT_SERVER_TIMEOUT = "35s"
TUNNEL_TIMEOUT = "1h"


def vrrp_priority(plan: ClusterPlan, node: NodePlan) -> int:
    """Bootstrap order decides: the init node must hold the VIP while it runs kubeadm init."""
    if len(plan.control_planes) >= CHECK_WEIGHT:
        raise ValueError(f"keepalived priorities support at most {CHECK_WEIGHT - 1} control-plane nodes")
    return TOP_PRIORITY - node.bootstrap_order


def keepalived_conf(plan: ClusterPlan, node: NodePlan) -> str:
    p = plan.profile
    if node.node.interface_name is None:  # the profile checks reject this first
        raise ValueError(f"{node.name}: keepalived-haproxy needs interfaceName on control-plane nodes")
    peers = [cp.node.address for cp in plan.control_planes if cp.name != node.name]
    hc = p.health_check
    return render(
        "keepalived.conf.j2",
        router_id=node.name,
        check_script=CHECK_SCRIPT,
        check_interval=hc.interval_seconds,
        check_timeout=CHECK_CURL_SECONDS + 1,
        check_fall=hc.failures,
        check_rise=hc.successes,
        check_weight=-CHECK_WEIGHT,
        interface=node.node.interface_name,
        virtual_router_id=p.keepalived.virtual_router_id,
        priority=vrrp_priority(plan, node),
        source_ip=node.node.address,
        peers=peers,
        auth_pass=plan.vrrp_password,
        # A host route, not the subnet's prefix: the VIP is never the node's own address, so address
        # autodetection (Calico's, the kubelet's) cannot pick it up on whichever node holds it.
        vip=f"{plan.vip}/32",
    )


def check_apiserver_script(plan: ClusterPlan) -> str:
    p = plan.profile
    return render(
        "check-apiserver.sh.j2",
        vip=str(plan.vip),
        haproxy_port=p.keepalived.haproxy_port,
        cluster_ca=CLUSTER_CA,
        max_time=CHECK_CURL_SECONDS,
    )


def haproxy_cfg(plan: ClusterPlan, client_server_timeout: str = CLIENT_SERVER_TIMEOUT,
                tunnel_timeout: str = TUNNEL_TIMEOUT) -> str:
    p = plan.profile
    return render(
        "haproxy.cfg.j2",
        client_server_timeout=client_server_timeout,
        tunnel_timeout=tunnel_timeout,
        haproxy_port=p.keepalived.haproxy_port,
        api_server_port=p.cluster.api_server_port,
        servers=[(cp.name, cp.node.address) for cp in plan.control_planes],
    )


def keepalived_haproxy_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if plan.profile.lb_mode != "keepalived-haproxy" or not node.node.is_control_plane:
        return NodeFragment()
    return NodeFragment(files=(
        NodeFile(KEEPALIVED_CONF, keepalived_conf(plan, node), "0600"),  # holds the VRRP password
        NodeFile(CHECK_SCRIPT, check_apiserver_script(plan), "0755"),
        NodeFile(HAPROXY_CFG, haproxy_cfg(plan), "0644"),
        # Debian's units do not restart a crashed daemon; a dead keepalived would leave its VIP behind.
        NodeFile("/etc/systemd/system/keepalived.service.d/k8sseed.conf",
                 "[Service]\nRestart=on-failure\nRestartSec=2s\n"),
        NodeFile("/etc/systemd/system/haproxy.service.d/k8sseed.conf",
                 "[Service]\nRestart=on-failure\nRestartSec=2s\n"),
    ))
