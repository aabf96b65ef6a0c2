"""Phase 4, load-balancer: what the control-plane endpoint mode needs on the node."""

from __future__ import annotations

from k8sseed.components import NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan


def load_balancer_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    # external: the user's load balancer or DNS name already serves the endpoint.
    return NodeFragment(env=(("K8SSEED_LB_MODE", plan.profile.lb_mode),))
