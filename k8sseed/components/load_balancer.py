"""Phase 4, load-balancer: what the endpoint mode and BGP need on the node (configs come from bird.py,
keepalived_haproxy.py and node_local_lb.py; this fragment tells the bootstrap script which services to start)."""

from __future__ import annotations

from k8sseed.components import NodeFragment
from k8sseed.components.node_local_lb import node_local_lb_files
from k8sseed.plan import ClusterPlan, NodePlan


def load_balancer_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    return NodeFragment(files=node_local_lb_files(plan, node), env=(
        ("K8SSEED_LB_MODE", plan.profile.lb_mode),
        ("K8SSEED_BGP", "yes" if plan.profile.bgp else "no"),
        ("K8SSEED_CONTROL_PLANE", "yes" if node.node.is_control_plane else "no"),
        ("K8SSEED_VIP", str(plan.vip) if plan.vip else ""),
    ))
