"""Phase 2, runtime: Docker with the systemd cgroup driver, cri-dockerd pinned, the private registry's CA trusted."""

from __future__ import annotations

import json
from typing import Any

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.registry_trust import SYSTEM_CA_PATHS, docker_ca_path
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


def registry_trust_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    """mirrors.registryCA in the system trust store, for curl and apt (the bootstrap runs update-ca-certificates
    before its first download) and for Ignition's own fetches on Flatcar: every node, external etcd members too."""
    mirrors, path = plan.profile.mirrors, SYSTEM_CA_PATHS[plan.profile.os_family]
    if not mirrors.registry_ca:
        return NodeFragment(env=(("K8SSEED_REGISTRY_CA", ""),))
    pem = mirrors.registry_ca.strip() + "\n"
    return NodeFragment(files=(NodeFile(path, pem),), env=(("K8SSEED_REGISTRY_CA", path),), trusted_cas=(pem,))


def docker_registry_ca_files(plan: ClusterPlan) -> tuple[NodeFile, ...]:
    """mirrors.registryCA for Docker, once per registry the nodes pull from through a mirror setting."""
    mirrors = plan.profile.mirrors
    if not mirrors.registry_ca:
        return ()
    return tuple(NodeFile(docker_ca_path(host), mirrors.registry_ca.strip() + "\n") for host in mirrors.registry_hosts)


def runtime_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    p = plan.profile
    return NodeFragment(
        files=(
            NodeFile("/etc/docker/daemon.json", json.dumps(docker_daemon_config(plan), indent=2, sort_keys=True)
                     + "\n"),
            NodeFile("/etc/systemd/system/cri-docker.service",
                     render("cri-docker.service.j2", pause_image=plan.pause_image, bin_dir=plan.bin_dir)),
            NodeFile("/etc/systemd/system/cri-docker.socket", render("cri-docker.socket.j2")),
            *docker_registry_ca_files(plan),
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
