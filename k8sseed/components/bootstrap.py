"""The bootstrap script, its systemd unit and the per-node environment it reads."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render, render_static, shell_assignments

SCRIPT_PATH = "/usr/local/sbin/k8sseed-bootstrap"
UNIT_PATH = "/etc/systemd/system/k8sseed-bootstrap.service"
ENV_PATH = "/etc/k8sseed/node.env"
REPORTER_PATH = "/usr/local/sbin/k8sseed-report"


def _script(plan: ClusterPlan, node: NodePlan) -> str:
    """An etcd member's bootstrap installs and starts etcd only; every other node's runs the kubeadm phases."""
    if node.node.is_etcd:
        return render_static("bootstrap-etcd.sh.j2")
    return render("bootstrap.sh.j2", external_etcd=plan.external_etcd)


def bootstrap_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    server = plan.profile.seed_server
    return NodeFragment(
        files=(
            NodeFile(SCRIPT_PATH, _script(plan, node), "0755"),
            NodeFile(UNIT_PATH, render_static("k8sseed-bootstrap.service.j2")),
            NodeFile(REPORTER_PATH, render_static("k8sseed-report.py.j2"), "0755"),
        ),
        env=(("K8SSEED_NODE_NAME", node.name), ("K8SSEED_NODE_IP", node.node.address),
             ("K8SSEED_CLUSTER_NAME", plan.profile.cluster.name),
             # Status reports (k8sseed serve): where ISO-booted nodes report, and the node's own signing key.
             ("K8SSEED_STATUS_URL", server.url if server and server.url else ""),
             ("K8SSEED_STATUS_KEY", plan.status_key(node))),
        runcmd=(
            ("systemctl", "daemon-reload"),
            ("systemctl", "enable", "k8sseed-bootstrap.service"),
            # --no-block: cloud-final (running this command) finishes now; the bootstrap takes minutes. No
            # After=cloud-final in the unit: multi-user.target orders after it, and cloud-final after
            # multi-user.target, so that ordering would be a cycle that systemd breaks by dropping the job.
            ("systemctl", "start", "--no-block", "k8sseed-bootstrap.service"),
        ),
    )


def env_file(env: tuple[tuple[str, str | tuple[str, ...]], ...]) -> NodeFile:
    return NodeFile(ENV_PATH, "# Written by k8sseed: per-node values, sourced by k8sseed-bootstrap\n"
                    "# shellcheck shell=bash disable=SC2034\n"
                    + shell_assignments(env), "0600")
