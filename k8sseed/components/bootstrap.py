"""The bootstrap script, its systemd unit and the per-node environment it reads."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.components.sysext import needed_images
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render, render_static, shell_assignments

SCRIPT_PATH = "/usr/local/sbin/k8sseed-bootstrap"  # Debian and Ubuntu; plan.sbin_dir in general
UNIT_PATH = "/etc/systemd/system/k8sseed-bootstrap.service"
ENV_PATH = "/etc/k8sseed/node.env"
REPORTER_PATH = "/usr/local/sbin/k8sseed-report"


def _script(plan: ClusterPlan, node: NodePlan) -> str:
    """An etcd member's bootstrap installs and starts etcd only; every other node's runs the kubeadm phases."""
    if node.node.is_etcd:
        return render_static("bootstrap-etcd.sh.j2")
    return render("bootstrap.sh.j2", external_etcd=plan.external_etcd, flatcar=plan.flatcar, sbin_dir=plan.sbin_dir,
                  bin_dir=plan.bin_dir, bird_sysext="bird" in needed_images(plan))


def bootstrap_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    server = plan.profile.seed_server
    return NodeFragment(
        files=(
            NodeFile(f"{plan.sbin_dir}/k8sseed-bootstrap", _script(plan, node), "0755"),
            NodeFile(UNIT_PATH, render("k8sseed-bootstrap.service.j2", sbin_dir=plan.sbin_dir)),
            # The reporter is Python, which Flatcar does not ship: Flatcar nodes do not report their phases.
            *(() if plan.flatcar else (NodeFile(REPORTER_PATH, render_static("k8sseed-report.py.j2"), "0755"),)),
        ),
        env=(("K8SSEED_NODE_NAME", node.name), ("K8SSEED_NODE_IP", node.node.address),
             ("K8SSEED_CLUSTER_NAME", plan.profile.cluster.name),
             # Status reports (k8sseed serve): where ISO-booted nodes report, and the node's own signing key.
             ("K8SSEED_STATUS_URL", server.url if server and server.url else ""),
             ("K8SSEED_STATUS_KEY", plan.status_key(node))),
        start_units=("k8sseed-bootstrap.service",),
    )


def env_file(env: tuple[tuple[str, str | tuple[str, ...]], ...]) -> NodeFile:
    return NodeFile(ENV_PATH, "# Written by k8sseed: per-node values, sourced by k8sseed-bootstrap\n"
                    "# shellcheck shell=bash disable=SC2034\n"
                    + shell_assignments(env), "0600")
