"""Flatcar: the systemd-sysext images a node merges over /usr for what Flatcar does not ship (BIRD).

Ignition downloads each image to /etc/extensions/NAME.raw and checks its sha256 before the boot goes on.
systemd-sysext.service merges /etc/extensions at boot, ordered before sysinit.target, so every unit with default
dependencies (the bootstrap, bird.service) already finds the image's binaries under /usr. systemd accepts an image
only if it holds usr/lib/extension-release.d/extension-release.NAME for the same NAME.
"""

from __future__ import annotations

from k8sseed.components import NodeDownload, NodeFragment
from k8sseed.plan import ClusterPlan, NodePlan

EXTENSIONS_DIR = "/etc/extensions"


def sysext_path(name: str) -> str:
    return f"{EXTENSIONS_DIR}/{name}.raw"


def needed_images(plan: ClusterPlan) -> tuple[str, ...]:
    """The extensions a Flatcar node of this profile needs: BIRD for the host BGP speaker."""
    return ("bird",) if plan.flatcar and plan.profile.bgp is not None else ()


def ignition_only(plan: ClusterPlan) -> bool:
    """Nodes that download images have no NoCloud rendering: write_files cannot fetch and check them."""
    return bool(needed_images(plan))


def sysext_fragment(plan: ClusterPlan, node: NodePlan) -> NodeFragment:
    names = needed_images(plan)
    if not names:
        return NodeFragment()
    flatcar = plan.profile.flatcar
    assert flatcar is not None, "the profile checks require os.flatcar with os.family flatcar"
    downloads = []
    for name in names:
        image = flatcar.sysext_image(name)
        sha256 = image.sha256_for(node.node.arch) if image else None
        if image is None or sha256 is None:  # the profile checks reject this first
            raise ValueError(f"{node.name}: no os.flatcar.sysext.{name} for {node.node.arch}")
        downloads.append(NodeDownload(sysext_path(name), image.url_for(node.node.arch), sha256))
    return NodeFragment(downloads=tuple(downloads))
