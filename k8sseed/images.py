"""Every container image a profile's nodes pull: as upstream names it, and as the nodes pull it through mirrors.

For `k8sseed images` (a site copies the upstream names to its registry before an air-gapped install). The
mirrored names follow what the nodes do: kubeadm pulls from mirrors.imageRepository; the Tigera operator pulls
Calico's components from mirrors.calicoRegistry (Installation spec.registry); the init node rewrites the images
named in the fetched operator and PureLB manifests with mirrors.imageRegistries (the node script's own
function, imported here); Docker pulls what is left on Docker Hub through mirrors.dockerHubMirrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from k8sseed.nodescripts.rewrite_image_registries import DOCKER_HUB, mirrored, split_reference
from k8sseed.plan import calico_version, pause_image
from k8sseed.profile.model import Profile
from k8sseed.versions import (
    CALICO_COMPONENTS,
    CALICO_OPERATOR,
    CALICO_OPERATOR_UNVERIFIED,
    CALICO_QUAY_SINCE,
    PURELB_IMAGES,
    PURELB_REGISTRY,
    MinorFacts,
    facts_for,
    parse_version,
)

# kubeadm's DefaultImageRepository (v1beta3 and v1beta4), where the control-plane images are published.
KUBEADM_REPOSITORY = "registry.k8s.io"
KUBEADM_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
TIGERA_OPERATOR = "quay.io/tigera/operator"


@dataclass(frozen=True)
class Image:
    upstream: str  # where the image is published
    mirrored: str  # what the nodes pull (the same when no mirror applies)


@dataclass(frozen=True)
class NodeImages:
    images: tuple[Image, ...]
    warnings: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # images k8sseed cannot name: the list is incomplete


def kubeadm_images(profile: Profile, facts: MinorFacts) -> list[Image]:
    """`kubeadm config images list` for the profile's release, in kubeadm's order."""
    version = profile.cluster.kubernetes_version
    patch = parse_version(version)[2]
    repository = profile.mirrors.image_repository
    images = [Image(f"{KUBEADM_REPOSITORY}/{name}:v{version}", f"{repository}/{name}:v{version}")
              for name in KUBEADM_COMPONENTS]
    # kubeadm's GetDNSImage: only its default repository keeps CoreDNS under coredns/coredns; any other
    # imageRepository gets <repository>/coredns:<tag>.
    coredns = facts.coredns_for(patch)
    dns_path = "coredns/coredns" if repository == KUBEADM_REPOSITORY else "coredns"
    images.append(Image(f"{KUBEADM_REPOSITORY}/coredns/coredns:{coredns}", f"{repository}/{dns_path}:{coredns}"))
    images.append(Image(f"{KUBEADM_REPOSITORY}/pause:{facts.pause}", pause_image(profile, facts)))
    if not profile.external_etcd:  # external etcd runs from the release tarball, not an image
        etcd = facts.etcd_image_for(patch)
        images.append(Image(f"{KUBEADM_REPOSITORY}/etcd:{etcd}", f"{repository}/etcd:{etcd}"))
    return images


def _from_docker_hub(image: str, profile: Profile) -> str:
    """Docker asks its first registry mirror for Docker Hub images (daemon.json registry-mirrors)."""
    registry, path = split_reference(image)
    if registry != DOCKER_HUB or not profile.mirrors.docker_hub_mirrors:
        return image
    return f"{urlsplit(profile.mirrors.docker_hub_mirrors[0]).netloc}/{path}"


def _manifest_image(image: str, profile: Profile) -> Image:
    """An image named in a manifest the init node fetches and rewrites (k8sseed-rewrite-images)."""
    return Image(image, _from_docker_hub(mirrored(image, dict(profile.mirrors.image_registries)), profile))


def calico_images(profile: Profile, facts: MinorFacts) -> NodeImages:
    version = calico_version(profile, facts)
    images, warnings, unknown = [], [], []
    operator = CALICO_OPERATOR.get(version)
    if operator is None:
        unknown.append(f"the Tigera operator image of Calico {version} (k8sseed's table does not know its "
                       "release: read it in the calicoOperator manifest, the tigera-operator Deployment's image)")
    else:
        images.append(_manifest_image(f"{TIGERA_OPERATOR}:v{operator}", profile))
        if version in CALICO_OPERATOR_UNVERIFIED:
            warnings.append(f"the Tigera operator release of Calico {version} (v{operator}) is not verified: "
                            "check it against the calicoOperator manifest")
    default = "quay.io" if parse_version(version) >= CALICO_QUAY_SINCE else DOCKER_HUB
    registry = profile.mirrors.calico_registry
    for name in CALICO_COMPONENTS:
        upstream = f"{default}/calico/{name}:v{version}"
        # Installation spec.registry replaces the registry and keeps the image path: <registry>/calico/<name>.
        pulled = f"{registry}/calico/{name}:v{version}" if registry else _from_docker_hub(upstream, profile)
        images.append(Image(upstream, pulled))
    return NodeImages(tuple(images), tuple(warnings), tuple(unknown))


def purelb_images(profile: Profile) -> list[Image]:
    if not profile.purelb.enabled:
        return []
    return [_manifest_image(f"{PURELB_REGISTRY}/{name}:v{profile.purelb.version}", profile)
            for name in PURELB_IMAGES]


def node_images(profile: Profile) -> NodeImages:
    """Every image the profile's nodes pull, each once, kubeadm's first."""
    facts = facts_for(profile.cluster.kubernetes_version)
    if facts is None:  # the profile checks reject this first
        raise ValueError(f"unsupported Kubernetes version {profile.cluster.kubernetes_version}")
    calico = calico_images(profile, facts)
    images = [*kubeadm_images(profile, facts), *calico.images, *purelb_images(profile)]
    return NodeImages(tuple(dict.fromkeys(images)), calico.warnings, calico.unknown)
