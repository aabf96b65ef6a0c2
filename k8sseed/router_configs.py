"""The routers' side of the cluster's BGP sessions: per peer a BIRD 2 and an FRR config, plus a README.

Written by the build into OUT/router/. They hold the sessions' MD5 passwords: keep them as private as the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from k8sseed.components.bird import announced_vip, bird_symbol, cluster_routes
from k8sseed.plan import ClusterPlan
from k8sseed.profile.model import BgpPeer
from k8sseed.templating import render


@dataclass(frozen=True)
class RouterNeighbor:
    name: str
    symbol: str
    address: str
    control_plane: bool
    router_id: str


def neighbors_of(plan: ClusterPlan, peer: BgpPeer) -> tuple[RouterNeighbor, ...]:
    return tuple(RouterNeighbor(n.name, bird_symbol("node", n.name), n.node.address, n.node.is_control_plane,
                                plan.bird_router_id(n))
                 for n in plan.nodes if peer in plan.bgp_peers_for(n))


def router_configs(plan: ClusterPlan) -> dict[str, str]:
    """File name → text for OUT/router/: `<peer>.bird.conf`, `<peer>.frr.conf` and `README.md`."""
    bgp = plan.profile.bgp
    if bgp is None:
        return {}
    passwords = dict(plan.bgp_passwords)
    vip = announced_vip(plan)
    routes = cluster_routes(plan)
    values = {"plan": plan, "bgp": bgp, "vip": vip, "routes": routes, "health": plan.profile.health_check}
    files: dict[str, str] = {}
    peers = []
    for peer in bgp.peers:
        neighbors = neighbors_of(plan, peer)
        peers.append((peer, neighbors))
        for kind in ("bird", "frr"):
            files[f"{peer.name}.{kind}.conf"] = render(f"router-{kind}.conf.j2", peer=peer, neighbors=neighbors,
                                                       password=passwords.get(peer.name), **values)
    files["README.md"] = render("router-README.md.j2", peers=peers, passwords=passwords, **values)
    return files
