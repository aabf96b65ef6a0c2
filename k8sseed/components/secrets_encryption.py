"""Secrets at rest: the API server's EncryptionConfiguration, with a secretbox key derived from the cluster
secret. Control-plane seeds only; kubeadm wires it into kube-apiserver (see kubeadm_config.cluster_configuration)."""

from __future__ import annotations

from typing import Any

from k8sseed.components import NodeFile, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan
from k8sseed.yamltext import dump_all

ENCRYPTION_API = "apiserver.config.k8s.io/v1"
# Outside /etc/kubernetes/pki and manifests, which `kubeadm reset` empties before a retried init or join.
ENCRYPTION_DIR = "/etc/kubernetes/encryption"
ENCRYPTION_CONFIG = f"{ENCRYPTION_DIR}/config.yaml"
# The key's name is stored with every encrypted value (k8s:enc:secretbox:v1:<name>:...): a rotated key gets a
# new name, and the old one stays readable until every Secret has been rewritten (README: key rotation).
KEY_NAME = "k8sseed-1"


def encryption_configuration(plan: ClusterPlan) -> dict[str, Any]:
    """Secrets are written with secretbox; identity last, so Secrets stored before encryption stay readable."""
    return {
        "apiVersion": ENCRYPTION_API,
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"secretbox": {"keys": [{"name": KEY_NAME, "secret": plan.secrets_encryption_key}]}},
                {"identity": {}},
            ],
        }],
    }


def api_server_volume() -> dict[str, Any]:
    """The kubeadm HostPathMount (same shape in v1beta3 and v1beta4) that shows the directory to kube-apiserver."""
    return {"name": "k8sseed-encryption", "hostPath": ENCRYPTION_DIR, "mountPath": ENCRYPTION_DIR,
            "readOnly": True, "pathType": "DirectoryOrCreate"}


def secrets_encryption_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    if not node.node.is_control_plane:
        return NodeFragment()
    return NodeFragment(files=(NodeFile(ENCRYPTION_CONFIG, dump_all([encryption_configuration(plan)]), "0600"),))
