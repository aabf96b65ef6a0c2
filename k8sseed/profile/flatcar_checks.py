"""Semantic checks for Flatcar nodes (os.family flatcar): what a system without a package manager and
without Python can run, and the downloads it needs pinned."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from k8sseed.errors import Finding
from k8sseed.profile.source import Source


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _archs(src: Source) -> list[str]:
    nodes = _get(src.data, "nodes")
    archs = {n.get("arch", "amd64") for n in nodes if isinstance(n, dict)} if isinstance(nodes, list) else set()
    return sorted(a for a in archs if isinstance(a, str))


def flatcar_findings(src: Source) -> list[Finding]:
    return list(_findings(src))


def _findings(src: Source) -> Iterator[Finding]:
    family = _get(src.data, "os", "family")
    section = _get(src.data, "os", "flatcar")
    if family != "flatcar":
        if section is not None:
            yield src.finding(("os", "flatcar"), f"only Flatcar nodes read os.flatcar, and os.family is '{family}': "
                                                 "remove os.flatcar or set os.family: flatcar")
        return
    if not isinstance(section, dict):
        yield src.finding(("os", "family"), "Flatcar has no package manager: add os.flatcar.kubernetesSha256 "
                                            "({amd64: {kubeadm: ..., kubelet: ..., kubectl: ...}}) so that the nodes "
                                            "can download and check the Kubernetes binaries")
    else:
        sums = section.get("kubernetesSha256")
        missing = [a for a in _archs(src) if isinstance(sums, dict) and a not in sums]
        if missing:
            yield src.finding(("os", "flatcar", "kubernetesSha256"),
                              f"no sums for {', '.join(missing)}, which node(s) run: add "
                              + ", ".join(f"{a}: {{kubeadm: ..., kubelet: ..., kubectl: ...}}" for a in missing))
    version = _get(src.data, "cluster", "kubernetesVersion")
    minor = version.split(".") if isinstance(version, str) else []
    if len(minor) == 3 and minor[1].isdigit() and int(minor[1]) < 31:
        yield src.finding(("cluster", "kubernetesVersion"),
                          "kubeadm before 1.31 needs crictl, which k8sseed does not install on Flatcar: use "
                          "Kubernetes 1.31 or newer with os.family flatcar (kubeadm talks to the CRI itself since)")
    mode = _get(src.data, "controlPlaneLB", "mode")
    if mode in ("keepalived-haproxy", "node-local"):
        yield src.finding(("controlPlaneLB", "mode"),
                          f"{mode} runs HAProxy{' and Keepalived' if mode == 'keepalived-haproxy' else ''} as system "
                          "services, and Flatcar ships neither: use mode external with Flatcar nodes")
    yield from _sysext_findings(src, section if isinstance(section, dict) else {})
    if _get(src.data, "mirrors", "apt"):
        yield src.finding(("mirrors", "apt"), "Flatcar has no apt (no package manager): remove mirrors.apt")
    if _get(src.data, "mirrors", "imageRegistries"):
        yield src.finding(("mirrors", "imageRegistries"),
                          "the image rewrite runs on the init node with python3, which Flatcar does not ship: remove "
                          "mirrors.imageRegistries (mirror docker.io with mirrors.dockerHubMirrors)")
    docker = _get(src.data, "runtime", "docker")
    if isinstance(docker, dict) and (docker.get("source", "distro") != "distro" or docker.get("version")):
        yield src.finding(("runtime", "docker"), "Flatcar nodes run the Docker of their Flatcar release: leave out "
                                                 "runtime.docker.source and runtime.docker.version")


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _sysext_findings(src: Source, section: dict[str, Any]) -> Iterator[Finding]:
    """The systemd-sysext images a profile's mode needs (bird with a bgp section), each with a sum per node arch."""
    sysext = section.get("sysext")
    images = sysext if isinstance(sysext, dict) else {}
    bird = images.get("bird")
    # An image the schema already refused (a typo of its name, a bad value) is reported once, by the schema.
    refused = any(len(p) == 4 and p[:3] == ("os", "flatcar", "sysext") and p[3] not in images for p in src.positions)
    if _get(src.data, "bgp") is not None and bird is None and not refused:
        yield src.finding(("bgp",), "Flatcar ships no BIRD: add os.flatcar.sysext.bird ({url: ..., sha256: {amd64: "
                                    "...}}), a systemd-sysext image with bird and birdc (README: Flatcar and "
                                    "systemd-sysext), or leave out the bgp section and use controlPlaneLB.mode "
                                    "external", at_key=True)
    if bird is not None and _get(src.data, "bgp") is None:
        yield src.finding(("os", "flatcar", "sysext", "bird"),
                          "no bgp section, so no node runs BIRD: remove os.flatcar.sysext.bird", at_key=True)
    for name, image in images.items():
        if not isinstance(image, dict):
            continue
        url = image.get("url")
        unknown = [m for m in _PLACEHOLDER.findall(url) if m != "arch"] if isinstance(url, str) else []
        if unknown:
            yield src.finding(("os", "flatcar", "sysext", name, "url"),
                              f"unknown placeholder '{{{unknown[0]}}}' in '{url}' (known here: {{arch}})")
        sums = image.get("sha256")
        written = src.positions.keys()
        missing = [a for a in _archs(src) if isinstance(sums, dict) and a not in sums
                   and ("os", "flatcar", "sysext", name, "sha256", a) not in written]
        if missing:
            yield src.finding(("os", "flatcar", "sysext", name, "sha256"),
                              f"no sum for {', '.join(missing)}, which node(s) run: add "
                              + ", ".join(f"{a}: <sha256 of the {a} image>" for a in missing))
