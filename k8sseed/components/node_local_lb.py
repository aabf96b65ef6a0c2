"""Phase 4, node-local mode: every node, control planes included, runs HAProxy on 127.0.0.1 and reaches the API
servers through it. The endpoint is a DNS name that each node's /etc/hosts maps to 127.0.0.1, so kubeadm's
controlPlaneEndpoint, the kubeconfigs of kubelet and kube-proxy, and the join discovery all go through the
node's own balancer. HAProxy probes every API server's /readyz over TLS (verified against the cluster CA) at the
profile's healthCheck interval and takes one out after `failures` bad probes (README: node-local trade-offs)."""

from __future__ import annotations

import re

from k8sseed.components import NodeFile
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
HOSTS_SCRIPT = "/usr/local/sbin/k8sseed-local-endpoint"
CLUSTER_CA = "/etc/k8sseed/cluster-ca.crt"  # written by the kubernetes component on every node
LISTEN_ADDRESS = "127.0.0.1"
# A /readyz probe that has not answered after this long counts as failed (the keepalived mode's curl limit).
CHECK_TIMEOUT_SECONDS = 2
# A connection to an API server that is gone without a reset (powered off) is given up after this and the
# client's connection is redispatched to another server, before the health checks have noticed.
CONNECT_TIMEOUT_SECONDS = 2
# As in keepalived-haproxy mode: forwarded API sessions (watches, exec, logs -f) idle far longer than 35 s.
CLIENT_SERVER_TIMEOUT = "35s"
TUNNEL_TIMEOUT = "1h"


def detection_bound_seconds(plan: ClusterPlan) -> int:
    """The longest an API server that stops answering keeps getting new connections: `failures` probes, each
    started an interval after the last ended and given up after the check timeout (plus a connect time-out of at
    most the interval), and up to one interval until the first probe after the failure."""
    hc = plan.profile.health_check
    per_probe = hc.interval_seconds + min(CONNECT_TIMEOUT_SECONDS, hc.interval_seconds) + CHECK_TIMEOUT_SECONDS
    return hc.failures * per_probe + hc.interval_seconds


def return_bound_seconds(plan: ClusterPlan) -> int:
    """The longest a recovered API server waits for traffic again: `successes` good probes, one interval apart."""
    hc = plan.profile.health_check
    return (hc.successes + 1) * hc.interval_seconds


def haproxy_cfg(plan: ClusterPlan, ca_file: str = CLUSTER_CA) -> str:
    """The same on every node: 127.0.0.1:<endpoint port> to every control plane's API server."""
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", ca_file):
        raise ValueError(f"{ca_file!r} cannot be written as a path in an HAProxy config")
    p = plan.profile
    hc = p.health_check
    return render(
        "node-local-haproxy.cfg.j2",
        listen_address=LISTEN_ADDRESS,
        listen_port=p.cluster.endpoint_port,
        api_server_port=p.cluster.api_server_port,
        names=tuple(cp.name for cp in plan.control_planes),
        addresses=tuple(cp.node.address for cp in plan.control_planes),
        interval=hc.interval_seconds,
        failures=hc.failures,
        successes=hc.successes,
        check_timeout=CHECK_TIMEOUT_SECONDS,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        client_server_timeout=CLIENT_SERVER_TIMEOUT,
        tunnel_timeout=TUNNEL_TIMEOUT,
        ca_file=ca_file,
    )


def hosts_script(plan: ClusterPlan) -> str:
    return render("k8sseed-local-endpoint.sh.j2", name=plan.profile.cluster.endpoint_host, address=LISTEN_ADDRESS)


def node_local_lb_files(plan: ClusterPlan, node: NodePlan) -> tuple[NodeFile, ...]:
    if plan.profile.lb_mode != "node-local":
        return ()
    return (
        NodeFile(HAPROXY_CFG, haproxy_cfg(plan), "0644"),
        NodeFile(HOSTS_SCRIPT, hosts_script(plan), "0755"),
        # Debian's unit does not restart a crashed HAProxy; on this node nothing else reaches the API.
        NodeFile("/etc/systemd/system/haproxy.service.d/k8sseed.conf",
                 "[Service]\nRestart=on-failure\nRestartSec=2s\n"),
    )
