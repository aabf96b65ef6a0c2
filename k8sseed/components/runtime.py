"""Phase 2, runtime: Docker with the systemd cgroup driver, and cri-dockerd pinned."""

from __future__ import annotations

import json
from typing import Any

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.templating import render

DOCKER_DAEMON = {
    "exec-opts": ["native.cgroupdriver=systemd"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m"},
    "storage-driver": "overlay2",
}


def docker_daemon_config(plan: ClusterPlan) -> dict[str, Any]:
    config: dict[str, Any] = dict(DOCKER_DAEMON)
    if plan.profile.mirrors.docker_hub_mirrors:
        # Docker Hub pulls (PureLB's and other docker.io images) go to these first: no Hub rate limit.
        config["registry-mirrors"] = list(plan.profile.mirrors.docker_hub_mirrors)
    return config


def runtime_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    p = plan.profile
    return NodeFragment(
        files=(
            NodeFile("/etc/docker/daemon.json", json.dumps(docker_daemon_config(plan), indent=2, sort_keys=True)
                     + "\n"),
            NodeFile("/etc/systemd/system/cri-docker.service",
                     render("cri-docker.service.j2", pause_image=plan.pause_image, bin_dir=plan.bin_dir)),
            NodeFile("/etc/systemd/system/cri-docker.socket", render("cri-docker.socket.j2")),
        ),
        env=(
            ("K8SSEED_DOCKER_SOURCE", p.docker_source),
            ("K8SSEED_DOCKER_VERSION", p.docker_version or ""),
            ("K8SSEED_DOCKER_REPO", plan.docker_repo_url),
            ("K8SSEED_CRI_DOCKERD_VERSION", plan.cri_dockerd_version),
            ("K8SSEED_CRI_DOCKERD_URL", plan.cri_dockerd_url(node.node.arch)),
            ("K8SSEED_CRI_DOCKERD_SHA256", plan.cri_dockerd_sha256(node.node.arch) or ""),
            ("K8SSEED_PAUSE_IMAGE", plan.pause_image),
        ),
    )
