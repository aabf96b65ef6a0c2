"""Stacked etcd membership: control planes join one at a time and never leave a dead etcd member behind."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render

SCRIPT_PATH = "/usr/local/sbin/k8sseed-etcd"  # Debian and Ubuntu; plan.sbin_dir in general


def _names_and_ips(nodes: tuple[NodePlan, ...]) -> tuple[str, ...]:
    return tuple(value for n in nodes for value in (n.name, n.node.address))


def etcd_membership_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    """Control planes get the etcd/API check script; every node gets the (possibly empty) lists the bootstrap
    passes to it: the control planes to wait for before joining, and the ones to ask when removing its member."""
    stacked_cp = node.node.is_control_plane and not plan.external_etcd  # external etcd: external_etcd.py
    script = NodeFile(f"{plan.sbin_dir}/k8sseed-etcd", render("k8sseed-etcd.sh.j2", flatcar=plan.flatcar), "0755")
    files = (script,) if stacked_cp else ()
    return NodeFragment(
        files=files,
        env=(
            ("K8SSEED_EARLIER_CONTROL_PLANES", _names_and_ips(plan.earlier_control_planes(node))),
            ("K8SSEED_OTHER_CONTROL_PLANES", _names_and_ips(plan.other_control_planes(node))),
        ),
    )
