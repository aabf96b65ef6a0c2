"""Control planes renew their kubeadm-issued certificates before expiry: a daily systemd timer runs a script that
checks the leaf certificates and kubeconfigs, runs `kubeadm certs renew all` when one is due, and restarts the
control-plane static pods one by one so that they load the new files."""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import CRI_SOCKET, ClusterPlan, NodePlan
from k8sseed.templating import render, render_static

SCRIPT_PATH = "/usr/local/sbin/k8sseed-cert-renewal"
SERVICE = "k8sseed-cert-renewal.service"
TIMER = "k8sseed-cert-renewal.timer"
# kubeadm issues leaf certificates for one year; renewing with 60 days left leaves two months of daily retries.
RENEW_BEFORE_DAYS = 60


def cert_renewal_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if not node.node.is_control_plane:
        return NodeFragment()
    script = f"{plan.sbin_dir}/k8sseed-cert-renewal"  # SCRIPT_PATH on Debian and Ubuntu
    return NodeFragment(
        files=(
            NodeFile(script, render_static("k8sseed-cert-renewal.sh.j2"), "0755"),
            NodeFile(f"/etc/systemd/system/{SERVICE}",
                     render("k8sseed-cert-renewal.service.j2", script=script, days=RENEW_BEFORE_DAYS,
                            cri_socket=CRI_SOCKET)),
            NodeFile(f"/etc/systemd/system/{TIMER}", render_static("k8sseed-cert-renewal.timer.j2")),
        ),
        start_units=(TIMER,),
    )
