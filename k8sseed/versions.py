"""The one version table: what each supported Kubernetes minor needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MinorFacts:
    minor: tuple[int, int]
    kubeadm_api: str
    pause: str
    cri_dockerd: str
    calico: str

    @property
    def minor_text(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"


def _row(minor: int, pause: str, cri_dockerd: str, calico: str) -> MinorFacts:
    # kubeadm v1beta3 up to 1.30, v1beta4 from 1.31 (v1beta3 removed in 1.36).
    api = "kubeadm.k8s.io/v1beta3" if minor <= 30 else "kubeadm.k8s.io/v1beta4"
    return MinorFacts((1, minor), api, pause, cri_dockerd, calico)


# pause = kubeadm's constants.PauseVersion for that minor; cri-dockerd picks the sandbox image,
# so it is always passed explicitly. calico = a Calico release whose support matrix covers the minor
# (installed with the Tigera operator).
VERSION_TABLE: dict[tuple[int, int], MinorFacts] = {
    row.minor: row
    for row in (
        _row(24, "3.7", "0.3.16", "3.25.2"),
        _row(25, "3.8", "0.3.16", "3.25.2"),
        _row(26, "3.9", "0.3.16", "3.26.4"),
        _row(27, "3.9", "0.3.16", "3.26.4"),
        _row(28, "3.9", "0.3.16", "3.27.4"),
        _row(29, "3.9", "0.3.16", "3.27.4"),
        _row(30, "3.9", "0.3.16", "3.28.2"),
        _row(31, "3.10", "0.4.0", "3.29.3"),
        _row(32, "3.10", "0.4.0", "3.30.3"),
        _row(33, "3.10", "0.4.0", "3.30.3"),
        _row(34, "3.10.1", "0.4.0", "3.32.1"),
        _row(35, "3.10.1", "0.4.0", "3.32.1"),
        _row(36, "3.10.1", "0.4.0", "3.32.1"),
    )
}

NFTABLES_SINCE = (1, 31)  # beta and on by default; alpha behind a feature gate in 1.29/1.30
IPVS_DEPRECATED_SINCE = (1, 35)  # KEP-5495


def parse_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = text.lstrip("v").split(".")
    return int(major), int(minor), int(patch)


def supported_minors() -> str:
    minors = sorted(VERSION_TABLE)
    return f"{minors[0][0]}.{minors[0][1]} to {minors[-1][0]}.{minors[-1][1]}"


def facts_for(version: str) -> MinorFacts | None:
    major, minor, _ = parse_version(version)
    return VERSION_TABLE.get((major, minor))


PURELB_V2_SINCE = (0, 15, 0)  # purelb.io/v2 API and the purelb-system namespace
