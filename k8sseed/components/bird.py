"""Placeholder while the bird component is written: contributes nothing yet."""

from __future__ import annotations

from k8sseed.components import NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan


def bird_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    return NodeFragment()
