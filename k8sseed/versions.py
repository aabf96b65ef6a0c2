"""The one version table: what each supported Kubernetes minor needs, and which releases exist."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MinorFacts:
    minor: tuple[int, int]
    kubeadm_api: str
    pause: str
    cri_dockerd: str
    calico: str
    newest_patch: int  # the newest patch release k8sseed knows of (patches are contiguous from .0)
    final: bool  # True: the minor is end of life and newest_patch is its last release

    @property
    def minor_text(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"

    @property
    def newest(self) -> str:
        return f"{self.minor_text}.{self.newest_patch}"


def _row(minor: int, pause: str, cri_dockerd: str, calico: str, newest_patch: int, final: bool) -> MinorFacts:
    # kubeadm v1beta3 up to 1.30, v1beta4 from 1.31 (v1beta3 removed in 1.36).
    api = "kubeadm.k8s.io/v1beta3" if minor <= 30 else "kubeadm.k8s.io/v1beta4"
    return MinorFacts((1, minor), api, pause, cri_dockerd, calico, newest_patch, final)


# pause = kubeadm's constants.PauseVersion for that minor (1.34.0, 1.35.4: 3.10.1; 1.36.1 and 1.36.5: 3.10.2,
# read in cmd/kubeadm/app/constants/constants.go of those module releases); cri-dockerd picks the sandbox image,
# so it is always passed explicitly. calico = a Calico release whose support matrix covers the minor
# (installed with the Tigera operator).
#
# Newest patch per minor, and whether it is final:
# - 1.24.17, 1.25.16, 1.26.15, 1.27.16, 1.28.15, 1.30.14, 1.31.14: the finalPatchRelease of each
#   end-of-life branch in kubernetes/website data/releases/eol.yaml (1.24.17, 1.25.16 and 1.26.15 came
#   out after the EOL date, for CVEs; the file says so). CHANGELOG-1.25.md in kubernetes/kubernetes
#   tops out at v1.25.16 as well.
# - 1.29.15: eol.yaml says 1.29.14, but v1.29.15 was released (k3s v1.29.15+k3s1, EKS kubelets
#   v1.29.15-eks-*, kube-proxy logging version="v1.29.15"); nothing newer is seen anywhere.
# - Minors whose last release is not known here (final=False): the newest release seen in public
#   configs and image lists (October/November 2026): 1.32.11 (kube-apiserver:v1.32.11 manifest),
#   1.33.11 (kubeadm ClusterConfiguration), 1.34.9 (image list), 1.35.8 (kubeadm constants.go quoted
#   in a test fixture), 1.36.5 (kurl image list of registry.k8s.io/kube-apiserver:v1.36.5).
#   A newer patch of these minors gets a warning, not an error: the table may simply be behind.
# Every release from v1.24.0 on has packages on pkgs.k8s.io (kubernetes/website PR #44719: "Linux
# packages for releases starting from Kubernetes v1.24.0 are available"; `apt-cache madison kubeadm`
# on core:/stable:/v1.25/deb lists 1.25.0-2.1 and 1.25.1-1.1 ... 1.25.16-1.1, so 1.25.6 included).
VERSION_TABLE: dict[tuple[int, int], MinorFacts] = {
    row.minor: row
    for row in (
        _row(24, "3.7", "0.3.16", "3.25.2", 17, final=True),
        _row(25, "3.8", "0.3.16", "3.25.2", 16, final=True),
        _row(26, "3.9", "0.3.16", "3.26.4", 15, final=True),
        _row(27, "3.9", "0.3.16", "3.26.4", 16, final=True),
        _row(28, "3.9", "0.3.16", "3.27.4", 15, final=True),
        _row(29, "3.9", "0.3.16", "3.27.4", 15, final=True),
        _row(30, "3.9", "0.3.16", "3.28.2", 14, final=True),
        _row(31, "3.10", "0.4.3", "3.29.3", 14, final=True),
        _row(32, "3.10", "0.4.3", "3.30.3", 11, final=False),
        _row(33, "3.10", "0.4.3", "3.30.3", 11, final=False),
        _row(34, "3.10.1", "0.4.3", "3.32.1", 9, final=False),
        _row(35, "3.10.1", "0.4.3", "3.32.1", 8, final=False),
        _row(36, "3.10.2", "0.4.3", "3.32.1", 5, final=False),
    )
}

# cri-dockerd releases (github.com/Mirantis/cri-dockerd/releases). 0.3.x: v0.3.0 (Dec 2022) to v0.3.26
# on the release/0.3 branch, except 0.3.19, which has no release (kubespray's checksum table lists
# 0.3.17, 0.3.18, 0.3.20, 0.3.21 and nobody downloads a v0.3.19 tarball); 0.3.22-0.3.26 seen as release
# download URLs. 0.4.x: v0.4.0 (2025-04-16) to v0.4.4 (v0.4.3 tagged 2026-04-28).
CRI_DOCKERD_RELEASES: tuple[str, ...] = (
    *(f"0.3.{p}" for p in range(0, 27) if p != 19),
    *(f"0.4.{p}" for p in range(0, 5)),
)

# Which Docker API each cri-dockerd release speaks, read in its source (libdocker/client.go and go.mod):
# - it refuses a daemon older than MinimumDockerAPIVersion: 1.26 in 0.3.x (v0.3.14, v0.3.17 read); 1.42 in
#   0.4.0 and 0.4.1 (Mirantis/cri-dockerd#346, "Bump up minimum Docker API to v1.42", v0.4.0 read); 1.26 again
#   from 0.4.2 (v0.4.3 and v0.4.4 read).
# - its Docker client library caps what it can negotiate: github.com/docker/docker v24 (API 1.43) up to 0.3.15
#   (v0.3.14 read), v25 (API 1.44) from 0.3.16 (Mirantis/cri-dockerd#395: "updated to v25.x for the 0.3
#   branch", before 0.3.16; v0.3.17 read). Docker 29 refuses clients older than API 1.44 ("client version 1.43
#   is too old", docker/for-win#14997, which is cri-dockerd failing to start).
CRI_DOCKERD_MIN_DOCKER_API_142 = ("0.4.0", "0.4.1")
CRI_DOCKERD_CLIENT_API_144_SINCE = (0, 3, 16)

# The Docker API each runtime source gives, as (major, minor): Debian 12's docker.io is 20.10.24 (API 1.41);
# Ubuntu 22.04 and 24.04 ship docker.io 24 or newer (API 1.43 and up); Flatcar 3185.0.0, the oldest release
# k8sseed takes, ships Docker 20.10 (API 1.41). Docker CE from Docker's repository is 29 today: it answers
# API 1.44 at the oldest.
DOCKER_API_OF_DISTRO = {"debian": (1, 41), "ubuntu": (1, 43), "flatcar": (1, 41)}
DOCKER_CE_OLDEST_API_SINCE_MAJOR = 29


def cri_dockerd_docker_problem(cri_dockerd: str, os_family: str, docker_source: str,
                               docker_version: str | None) -> str | None:
    """Why this cri-dockerd cannot talk to the Docker the nodes get, or None (then it starts)."""
    if docker_source == "distro" or os_family == "flatcar":
        api = DOCKER_API_OF_DISTRO.get(os_family)
        if api and api < (1, 42) and cri_dockerd in CRI_DOCKERD_MIN_DOCKER_API_142:
            docker = "Flatcar's Docker 20.10" if os_family == "flatcar" else "Debian 12's docker.io 20.10"
            return (f"cri-dockerd {cri_dockerd} refuses a Docker API older than 1.42 (Mirantis/cri-dockerd#346) "
                    f"and {docker} speaks API {api[0]}.{api[1]}, so the nodes would never get a container "
                    "runtime: use cri-dockerd 0.4.2 or newer, or 0.3.x (or leave runtime.criDockerd.version out)")
        return None
    major = _docker_major(docker_version)
    if (major is None or major >= DOCKER_CE_OLDEST_API_SINCE_MAJOR) \
            and tuple(int(p) for p in cri_dockerd.split(".")) < CRI_DOCKERD_CLIENT_API_144_SINCE:
        newest = "the newest Docker CE" if major is None else f"Docker CE {major}"
        return (f"cri-dockerd {cri_dockerd} talks Docker API 1.43 at most, and {newest} refuses clients older "
                "than API 1.44 (\"client version 1.43 is too old\", docker/for-win#14997), so the nodes would "
                "never get a container runtime: use cri-dockerd 0.3.16 or newer, or pin runtime.docker.version "
                "below 29")
    return None


def _docker_major(version: str | None) -> int | None:
    """The Docker major of an apt version pin ('5:28.5.2-1~debian.12~bookworm', '28.5'), or None."""
    if not version:
        return None
    match = re.match(r"(?:[0-9]+:)?([0-9]+)", version)
    return int(match.group(1)) if match else None


NFTABLES_SINCE = (1, 31)  # beta and on by default; alpha behind a feature gate in 1.29/1.30
IPVS_DEPRECATED_SINCE = (1, 35)  # KEP-5495

# What the profile schema lets through; leading zeros are reported by check_version.
_LOOSE = re.compile(r"v?1\.([0-9]+)\.([0-9]+)")


def parse_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = text.lstrip("v").split(".")
    return int(major), int(minor), int(patch)


def canonical(text: str) -> str | None:
    """'v1.30.04' -> '1.30.4'; None when text is not a 1.MINOR.PATCH version at all."""
    match = _LOOSE.fullmatch(text)
    return f"1.{int(match.group(1))}.{int(match.group(2))}" if match else None


def supported_minors() -> str:
    minors = sorted(VERSION_TABLE)
    return f"{minors[0][0]}.{minors[0][1]} to {minors[-1][0]}.{minors[-1][1]}"


def facts_for(version: str) -> MinorFacts | None:
    major, minor, _ = parse_version(version)
    return VERSION_TABLE.get((major, minor))


def newest_known() -> str:
    """The newest known patch of the newest minor in the table: what `k8sseed init` starts with."""
    return VERSION_TABLE[max(VERSION_TABLE)].newest


def release_problem(version: str) -> str | None:
    """Why a well-formed version cannot be installed, or None (a patch beyond a non-final minor's
    newest known one is only a warning: see patch_beyond_table)."""
    text = canonical(version)
    if text is None:
        return f"'{version}' is not a Kubernetes release version (e.g. {newest_known()})"
    if text != version.lstrip("v"):
        return None  # leading zeros: reported on their own
    facts = facts_for(text)
    if facts is None:
        return f"Kubernetes {text} is not in k8sseed's version table; supported minors: {supported_minors()}"
    if facts.final and parse_version(text)[2] > facts.newest_patch:
        return (f"Kubernetes {text} does not exist: {facts.minor_text} is end of life and its last release is "
                f"{facts.newest}; use {facts.newest}, or a newer minor such as {newest_known()}")
    return None


def patch_beyond_table(version: str) -> MinorFacts | None:
    """The minor's facts when version is newer than the newest patch k8sseed knows of (and could exist)."""
    facts = facts_for(version)
    if facts and not facts.final and parse_version(version)[2] > facts.newest_patch:
        return facts
    return None


def cri_dockerd_releases_text() -> str:
    """The known releases, compactly: '0.3.0-0.3.18, 0.3.20-0.3.26, 0.4.0-0.4.4'."""
    runs: list[list[str]] = []
    for version in CRI_DOCKERD_RELEASES:
        prev = runs[-1][-1] if runs else None
        if prev and prev.rsplit(".", 1)[0] == version.rsplit(".", 1)[0] \
                and int(prev.rsplit(".", 1)[1]) + 1 == int(version.rsplit(".", 1)[1]):
            runs[-1].append(version)
        else:
            runs.append([version])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


PURELB_V2_SINCE = (0, 15, 0)  # purelb.io/v2 API and the purelb-system namespace


# etcd releases for the external-etcd topology: the release tarball's sha256 per arch
# (etcd-v{version}-linux-{arch}.tar.gz from github.com/etcd-io/etcd/releases). Sums as listed in kubespray's
# checksum table (roles/kubespray-defaults/defaults/main/checksums.yml, etcd_binary_checksums, at 011b76d5);
# 3.5.6 cross-checked with a second, independent table. 3.5.x serves Kubernetes 1.24 to 1.36 (kubeadm's own
# etcd image for those minors is a 3.5 release; 3.4 clients and servers speak the same v3 API).
ETCD_RELEASES: dict[str, dict[str, str]] = {
    "3.5.12": {"amd64": "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
               "arm64": "31f30c01918771ece28d6e553e0f33be9483ced989896ecf6bbe1edb07786141"},
    "3.5.11": {"amd64": "e256885e753dc99001335e099d3c2eb8cf21a865a087ee4d7e3665752ae5929a",
               "arm64": "6edf0cddc8fa2d7674129abe2e44d5a37cc3a6e3b500c13c6cbc2ed2ecf08bf4"},
    "3.5.10": {"amd64": "26e90d024fa2310bc52bb40e7f2132e81640b55f8fc446c00ae07e30af2a44fd",
               "arm64": "ff74a6018d9b2a1320bff30e5a11b4f2f5c2a3d147df8a8bad53c01b9f800ee1"},
    "3.5.9": {"amd64": "d59017044eb776597eca480432081c5bb26f318ad292967029af1f62b588b042",
              "arm64": "bb201c106a61bbab59e2d9f37f4bdff99d50201f513c66b4578741eab581fb28"},
    "3.5.6": {"amd64": "4db32e3bc06dd0999e2171f76a87c1cffed8369475ec7aa7abee9023635670fb",
              "arm64": "888e25c9c94702ac1254c7655709b44bb3711ebaabd3cb05439f3dd1f2b51a87"},
}
ETCD_DEFAULT = "3.5.12"
