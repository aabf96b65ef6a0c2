"""Time-window join tokens: control planes keep the tokens of the previous, current and next windows."""

from __future__ import annotations

import calendar
import time

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render, render_static

SCRIPT_PATH = "/usr/local/sbin/k8sseed-join-tokens"
SERVICE_PATH = "/etc/systemd/system/k8sseed-join-tokens.service"
TIMER_PATH = "/etc/systemd/system/k8sseed-join-tokens.timer"


def join_tokens_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    """Control planes only, and only with time-window tokens (no cluster.bootstrapTokenTTL). Every value is the
    same in every window, so a rebuild in a new window changes the token lines of the kubeadm configs only."""
    if plan.window_token is None or not node.node.is_control_plane:
        return NodeFragment()
    not_before = calendar.timegm(time.strptime(plan.profile.cluster.pki_not_before, "%Y-%m-%d"))
    return NodeFragment(
        files=(NodeFile(f"{plan.sbin_dir}/k8sseed-join-tokens", render_static("k8sseed-join-tokens.sh.j2"), "0755"),
               NodeFile(SERVICE_PATH, render("k8sseed-join-tokens.service.j2", sbin_dir=plan.sbin_dir)),
               NodeFile(TIMER_PATH, render_static("k8sseed-join-tokens.timer.j2"))),
        env=(("K8SSEED_TOKEN_KEY", plan.bootstrap_token_key),
             ("K8SSEED_TOKEN_WINDOW_SECONDS", str(plan.window_token.window)),
             ("K8SSEED_CLOCK_NOT_BEFORE", str(not_before))),
        start_units=("k8sseed-join-tokens.timer",),
    )
