"""The apt repositories k8sseed adds (Kubernetes, Docker CE): their keys, checked on the node, and apt's lock.

k8sseed-apt fetches a repository key (or takes the inline one written here), accepts it only with the pinned
fingerprint and unexpired, and writes the keyring signed-by= names; it also runs apt-get update and turns
apt's signature errors into their cause and fix.
"""

from __future__ import annotations

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.repository_keys import KUBERNETES_KEY_URL, is_inline_key
from k8sseed.templating import render_static

APT_SCRIPT_PATH = "/usr/local/sbin/k8sseed-apt"
KEY_DIR = "/etc/k8sseed/apt-keys"
LOCK_CONF_PATH = "/etc/apt/apt.conf.d/90k8sseed-dpkg-lock"
# First boot of a cloud image often runs unattended-upgrades: every apt call waits this long for its lock.
DPKG_LOCK_TIMEOUT_SECONDS = 900


def _source(plan_value: str, name: str, files: list[NodeFile]) -> str:
    """A URL as is; an inline key block becomes a file on the node, named by its path."""
    if not is_inline_key(plan_value):
        return plan_value
    path = f"{KEY_DIR}/{name}.asc"
    files.append(NodeFile(path, plan_value.strip() + "\n"))
    return path


def apt_repositories_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if plan.flatcar:  # no apt: the bootstrap downloads what it needs
        return NodeFragment()
    files = [
        NodeFile(APT_SCRIPT_PATH, render_static("k8sseed-apt.sh.j2"), "0755"),
        NodeFile(LOCK_CONF_PATH, "// k8sseed: wait for another apt or dpkg (unattended-upgrades on first boot) "
                                 "instead of failing\n"
                                 f'DPkg::Lock::Timeout "{DPKG_LOCK_TIMEOUT_SECONDS}";\n'),
    ]
    kubernetes_key = _source(plan.kubernetes_key, "kubernetes", files)
    docker_key = _source(plan.docker_key, "docker", files)
    return NodeFragment(
        files=tuple(files),
        env=(
            ("K8SSEED_KUBERNETES_KEY", kubernetes_key),
            ("K8SSEED_KUBERNETES_KEY_FINGERPRINT", plan.kubernetes_key_fingerprint),
            # What the node's messages suggest when the key it got is expired or wrong.
            ("K8SSEED_KUBERNETES_KEY_SUGGESTION", KUBERNETES_KEY_URL),
            ("K8SSEED_DOCKER_KEY", docker_key),
            ("K8SSEED_DOCKER_KEY_FINGERPRINT", plan.docker_key_fingerprint),
            ("K8SSEED_DOCKER_KEY_SUGGESTION", f"{plan.docker_repo_url}/gpg"),
        ),
    )
