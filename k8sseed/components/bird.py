"""Phase 4, BGP: the host BIRD on every node of a profile with a `bgp` section, and on control-plane nodes in
`controlPlaneLB.mode: bgp` the health-gated API VIP.

The host BIRD is the node's only BGP speaker towards the routers (TCP 179). calico-node's BIRD listens on
bgp.calicoListenPort and peers with it over loopback; the host BIRD relays only the cluster's prefixes (pod
blocks, PureLB pools, advertised service ranges) and, while the local API server is ready, the VIP /32.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render

BIRD_CONF = "/etc/bird/bird.conf"
# What the seed writes: Debian's bird.service runs as user bird and fails on a root-owned /etc/bird/bird.conf,
# and cloud-init cannot hand it to the bird group before bird2 is installed. The load-balancer phase checks it
# and installs it as BIRD_CONF (root:bird 0640) once bird2 is there.
SEED_BIRD_CONF = "/etc/k8sseed/bird.conf"
VIP_HEALTH_UNIT = "/etc/systemd/system/k8sseed-vip-health.service"
# Flatcar: BIRD comes from the bird systemd-sysext image (components/sysext.py), which need not ship a unit and
# has no bird user to drop to (Flatcar's /etc/passwd is the image's): k8sseed's own unit runs it as root.
FLATCAR_BIRD_UNIT = "/etc/systemd/system/bird.service"
BIRD_SOCKET = "/run/bird/bird.ctl"  # Debian's, and what k8sseed-vip-health asks; Flatcar's unit passes it with -s
VIP_SYSCTL = "/etc/sysctl.d/91-k8sseed-vip.conf"
VIP_INTERFACE = "k8svip0"
# Interfaces whose addresses are never the node's LAN: service IPs, PureLB, the VIP, pod and tunnel devices.
NOT_LAN_INTERFACES = ("lo", "kube-ipvs0", "kube-lb0", VIP_INTERFACE, "cali*", "tunl*", "vxlan*", "docker*",
                      "wireguard*")

VIP_SYSCTL_TEXT = f"""\
# k8sseed: the API VIP sits on {VIP_INTERFACE} and is reached through the routers; never answer ARP for it on the LAN.
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.all.arp_announce = 2
"""

_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def bird_symbol(kind: str, name: str) -> str:
    """A BIRD protocol name for an RFC 1123 name: `peer_tor_a`. The prefix keeps user names clear of the fixed
    ones (vip, calico, lan) and the underscores keep it a bare word that birdc accepts unquoted."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot be a BIRD protocol name")
    return f"{kind}_{name.replace('-', '_')}"


@dataclass(frozen=True)
class RoutePattern:
    """A prefix the cluster may announce: `network` itself or anything inside it down to /max_len."""

    network: ipaddress.IPv4Network
    min_len: int
    why: str
    max_len: int = 32

    @property
    def bird(self) -> str:
        if self.min_len == self.max_len == self.network.prefixlen:
            return str(self.network)
        return f"{self.network}{{{self.min_len},{self.max_len}}}"

    @property
    def frr(self) -> str:
        text = str(self.network)
        if self.min_len > self.network.prefixlen:
            text += f" ge {self.min_len}"
        if self.max_len > self.min_len:
            text += f" le {self.max_len}"
        return text


def announced_vip(plan: ClusterPlan) -> ipaddress.IPv4Address | None:
    return plan.vip if plan.profile.lb_mode == "bgp" else None


def cluster_routes(plan: ClusterPlan) -> tuple[RoutePattern, ...]:
    """What calico-node may hand to the host BIRD and the host BIRD may pass on (the VIP is separate)."""
    p = plan.profile
    pods = ipaddress.IPv4Network(p.cluster.pod_subnet)
    routes = [RoutePattern(pods, max(pods.prefixlen, p.calico.block_size),
                           f"pod address blocks (/{p.calico.block_size}) and borrowed pod /32s")]
    if p.purelb.enabled:
        routes += [RoutePattern(pool.subnet, pool.subnet.prefixlen, f"PureLB pool {pool.name} (aggregation "
                                f"{pool.aggregation})") for pool in p.purelb.pools]
    if p.calico.advertise_service_cluster_ips:
        services = ipaddress.IPv4Network(p.cluster.service_subnet)
        routes.append(RoutePattern(services, services.prefixlen, "service cluster IPs"))
    routes += [RoutePattern(net, net.prefixlen, "service external IPs")
               for net in map(ipaddress.IPv4Network, p.calico.service_external_ips)]
    return tuple(routes)


def bird_conf(plan: ClusterPlan, node: NodePlan) -> str:
    p = plan.profile
    assert p.bgp is not None
    n = node.node
    vip = announced_vip(plan) if n.is_control_plane else None
    passwords = dict(plan.bgp_passwords)
    peers = [{"symbol": bird_symbol("peer", peer.name), "name": peer.name, "address": str(peer.address),
              "as_number": peer.as_number, "password": passwords.get(peer.name)}
             for peer in plan.bgp_peers_for(node)]
    # The LAN's device route lets the next hops calico-node sends (the node IP) resolve; it is never exported.
    if n.interface_name:
        lan = [{"exclude": False, "name": n.interface_name, "prefix": str(n.ip.network)}]
    else:
        lan = [{"exclude": True, "name": name, "prefix": ""} for name in NOT_LAN_INTERFACES]
        lan.append({"exclude": False, "name": "*", "prefix": str(n.ip.network)})
    return render("bird.conf.j2", node=n, router_id=plan.bird_router_id(node), asn=p.bgp.as_number,
                  calico_port=p.bgp.calico_listen_port, bgp=p.bgp, peers=peers, vip=vip,
                  routes=cluster_routes(plan), lan=lan)


def vip_health_script(plan: ClusterPlan, node: NodePlan) -> str:
    p = plan.profile
    hc = p.health_check
    return render("k8sseed-vip-health.sh.j2", vip=str(announced_vip(plan)),
                  probe_url=f"https://{node.node.address}:{p.cluster.api_server_port}/readyz",
                  interval=hc.interval_seconds, failures=hc.failures, successes=hc.successes,
                  interface=VIP_INTERFACE)


def vip_health_script_path(plan: ClusterPlan) -> str:
    return f"{plan.sbin_dir}/k8sseed-vip-health"


def bird_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if plan.profile.bgp is None:
        return NodeFragment()
    files = [NodeFile(SEED_BIRD_CONF, bird_conf(plan, node), "0600")]
    if plan.flatcar:
        files.append(NodeFile(FLATCAR_BIRD_UNIT, render("bird-flatcar.service.j2", config=BIRD_CONF,
                                                        socket=BIRD_SOCKET)))
    if node.node.is_control_plane and announced_vip(plan):
        script = vip_health_script_path(plan)
        files += [
            NodeFile(script, vip_health_script(plan, node), "0755"),
            NodeFile(VIP_HEALTH_UNIT, render("k8sseed-vip-health.service.j2", script=script, flatcar=plan.flatcar,
                                             vip=str(announced_vip(plan)), node_ip=node.node.address)),
            NodeFile(VIP_SYSCTL, VIP_SYSCTL_TEXT),
        ]
    return NodeFragment(files=tuple(files))
