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
    min_external_etcd: str  # the oldest external etcd this minor's kubeadm init accepts (see below)
    # kubeadm's etcd image tag and CoreDNS version, as (first patch, value) steps: patch releases move them.
    etcd_image: tuple[tuple[int, str], ...] = ()
    coredns: tuple[tuple[int, str], ...] = ()

    def etcd_image_for(self, patch: int) -> str:
        """The etcd image tag kubeadm of this patch release runs (stacked etcd)."""
        return _step(self.etcd_image, patch)

    def coredns_for(self, patch: int) -> str:
        """The CoreDNS image tag kubeadm of this patch release deploys."""
        return _step(self.coredns, patch)

    @property
    def minor_text(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"

    @property
    def newest(self) -> str:
        return f"{self.minor_text}.{self.newest_patch}"


def _step(steps: tuple[tuple[int, str], ...], patch: int) -> str:
    return [value for first, value in steps if first <= patch][-1]


def _row(minor: int, pause: str, cri_dockerd: str, calico: str, newest_patch: int, final: bool, etcd: str,
         etcd_image: tuple[tuple[int, str], ...], coredns: tuple[tuple[int, str], ...]) -> MinorFacts:
    # kubeadm v1beta3 up to 1.30, v1beta4 from 1.31 (v1beta3 removed in 1.36).
    api = "kubeadm.k8s.io/v1beta3" if minor <= 30 else "kubeadm.k8s.io/v1beta4"
    return MinorFacts((1, minor), api, pause, cri_dockerd, calico, newest_patch, final, etcd, etcd_image, coredns)


# pause = kubeadm's constants.PauseVersion for that minor (1.34.0, 1.35.4: 3.10.1; 1.36.1 and 1.36.5: 3.10.2,
# read in cmd/kubeadm/app/constants/constants.go of those module releases); cri-dockerd picks the sandbox image,
# so it is always passed explicitly. calico = a Calico release whose support matrix covers the minor
# (installed with the Tigera operator).
#
# etcd_image and coredns = the tags kubeadm of that patch release pulls (stacked etcd, CoreDNS):
# SupportedEtcdVersion[minor] and CoreDNSVersion in cmd/kubeadm/app/constants/constants.go (patch releases
# bump both). Read:
# - 1.24-1.31: minikube pkg/minikube/constants/constants_kubeadm_images.go, generated from `kubeadm config
#   images list` of every release up to 1.31.2 (e.g. 1.25.6: pause 3.8, etcd 3.5.6-0, coredns v1.9.3; 1.25.15:
#   etcd 3.5.9-0; 1.30.5: coredns v1.11.3). Later patches than those listed there (1.29.11+, 1.30.7+, 1.31.3+)
#   are unverified: the last step is assumed (late release-1.32 constants.go maps 29-32 to "3.5.24-0", so the
#   last patches of 1.29-1.31 may pull 3.5.24-0).
# - 1.32: 1.32.0's 3.5.16-0 (minikube, v1.32.0-beta.0); a late release-1.32 constants.go maps 32 to "3.5.24-0",
#   patch unverified.
# - 1.33: kubeadm 1.34.0's map gives 33: "3.5.21-0"; 1.33.6's constants.go (Go module source) has 3.5.24-0,
#   CoreDNS v1.12.0; the first patch with 3.5.24-0 is unverified.
# - 1.34.0, 1.35.4, 1.36.1, 1.36.5: their constants.go from the Go module source (k8s.io/kubernetes@vX):
#   34: 3.6.4-0 / v1.12.1; 35: 3.6.6-0 / v1.13.1; 36: 3.6.8-0 / v1.14.2 and PauseVersion 3.10.2 (not 3.10.1).
#   A later 1.34 constants.go maps 34 to 3.6.5-0 and a later 1.36 one to 3.6.9-0: patches unverified.
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
#
# etcd = kubeadm's MinExternalEtcdVersion (cmd/kubeadm/app/constants/constants.go): with an external etcd,
# kubeadm init's preflight check ExternalEtcdVersion asks each endpoint's /version and fails with "this version
# of kubeadm only supports external etcd version >= ..." on an older etcd; k8sseed ignores no preflight errors.
# kubeadm writes it as an image tag ("3.5.24-0"), which semver puts just below the release 3.5.24, so the
# release itself passes. It is raised in patch releases, so each row holds the newest patch's value, raised to
# the whole minor where the patch that raised it is not pinned down (a newer etcd always passes the check):
# - 1.24-1.27: 3.2.18, as in release-1.21 (read); these minors' own source is not read (the Go
#   module proxy serves no k8s.io/kubernetes release older than v1.29.6). kubernetes/kubernetes#118733 ("make
#   the minimum version for external etcd 3.4.13-4", milestone v1.28) raised it; no backport of it was found.
# - 1.28-1.30: 3.4.13-4 (#118733; 1.28 not read; read in v1.29.6, v1.29.10, v1.29.15, v1.30.4 and v1.30.14).
# - 1.31-1.36: 3.5.24-0, read in v1.31.14, v1.32.13, v1.33.6, v1.33.13, v1.34.2, v1.34.3, v1.34.4, v1.35.4,
#   v1.36.1, v1.36.3 and v1.36.5. Earlier patches asked less (v1.31.0 and v1.32.2: 3.5.11-0; v1.34.0: 3.5.21-0)
#   and the patches in between are not served by the proxy, so the whole minor gets 3.5.24. The rise is
#   kubernetes/kubernetes#134779 (master, before 1.35.0) and its backports #134861 (release-1.34), #135018
#   (1.33), #135019 (1.32) and #135020 (1.31), merged in November 2025 for etcd-io/etcd#20805: etcd 3.5.24
#   fixes (etcd-io/etcd#20797) members that took a snapshot from a 3.5.19-or-older member and kept its wrong
#   membership data, which fails the upgrade to etcd 3.6 (etcd.io/blog/2025/upgrade_from_3.5_to_3.6_issue_followup).
# Every release from v1.24.0 on has packages on pkgs.k8s.io (kubernetes/website PR #44719: "Linux
# packages for releases starting from Kubernetes v1.24.0 are available"; `apt-cache madison kubeadm`
# on core:/stable:/v1.25/deb lists 1.25.0-2.1 and 1.25.1-1.1 ... 1.25.16-1.1, so 1.25.6 included).
VERSION_TABLE: dict[tuple[int, int], MinorFacts] = {
    row.minor: row
    for row in (
        _row(24, "3.7", "0.3.16", "3.25.2", 17, final=True, etcd="3.2.18",
             etcd_image=((0, "3.5.3-0"), (8, "3.5.5-0"), (9, "3.5.6-0")), coredns=((0, "v1.8.6"),)),
        _row(25, "3.8", "0.3.16", "3.25.2", 16, final=True, etcd="3.2.18",
             etcd_image=((0, "3.5.4-0"), (4, "3.5.5-0"), (5, "3.5.6-0"), (15, "3.5.9-0")), coredns=((0, "v1.9.3"),)),
        _row(26, "3.9", "0.3.16", "3.26.4", 15, final=True, etcd="3.2.18",
             etcd_image=((0, "3.5.6-0"), (10, "3.5.9-0"), (13, "3.5.10-0")), coredns=((0, "v1.9.3"),)),
        _row(27, "3.9", "0.3.16", "3.26.4", 16, final=True, etcd="3.2.18",
             etcd_image=((0, "3.5.7-0"), (7, "3.5.9-0"), (10, "3.5.10-0"), (12, "3.5.12-0")),
             coredns=((0, "v1.10.1"),)),
        _row(28, "3.9", "0.3.16", "3.27.4", 15, final=True, etcd="3.4.13",
             etcd_image=((0, "3.5.9-0"), (6, "3.5.10-0"), (8, "3.5.12-0"), (14, "3.5.15-0")),
             coredns=((0, "v1.10.1"),)),
        _row(29, "3.9", "0.3.16", "3.27.4", 15, final=True, etcd="3.4.13",
             etcd_image=((0, "3.5.10-0"), (3, "3.5.12-0"), (9, "3.5.15-0")), coredns=((0, "v1.11.1"),)),
        _row(30, "3.9", "0.3.16", "3.28.2", 14, final=True, etcd="3.4.13",
             etcd_image=((0, "3.5.12-0"), (5, "3.5.15-0")), coredns=((0, "v1.11.1"), (5, "v1.11.3"))),
        _row(31, "3.10", "0.4.3", "3.29.3", 14, final=True, etcd="3.5.24",
             etcd_image=((0, "3.5.15-0"),), coredns=((0, "v1.11.1"), (1, "v1.11.3"))),
        _row(32, "3.10", "0.4.3", "3.30.3", 11, final=False, etcd="3.5.24",
             etcd_image=((0, "3.5.16-0"),), coredns=((0, "v1.11.3"),)),
        _row(33, "3.10", "0.4.3", "3.30.3", 11, final=False, etcd="3.5.24",
             etcd_image=((0, "3.5.21-0"), (6, "3.5.24-0")), coredns=((0, "v1.12.0"),)),
        _row(34, "3.10.1", "0.4.3", "3.32.1", 9, final=False, etcd="3.5.24",
             etcd_image=((0, "3.6.4-0"),), coredns=((0, "v1.12.1"),)),
        _row(35, "3.10.1", "0.4.3", "3.32.1", 8, final=False, etcd="3.5.24",
             etcd_image=((0, "3.6.6-0"),), coredns=((0, "v1.13.1"),)),
        _row(36, "3.10.2", "0.4.3", "3.32.1", 5, final=False, etcd="3.5.24",
             etcd_image=((0, "3.6.8-0"),), coredns=((0, "v1.14.2"),)),
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

# The release tarballs' sha256 (cri-dockerd-{version}.{arch}.tgz from github.com/Mirantis/cri-dockerd/releases),
# per version and arch, as Kubespray keeps them: kubernetes-sigs/kubespray, roles/kubespray_defaults/vars/main/
# checksums.yml, cri_dockerd_archive_checksums (at 005bdce7; 0.3.16 agrees with the sums profiles/reference.yaml
# always carried). A node checks its download against the profile's runtime.criDockerd.sha256, else against this.
# Kubespray lists no 0.4.x release and no other public table giving 0.4.x sums was found: cri-dockerd 0.4.3, the
# table's choice for Kubernetes 1.31 and newer, has no sum here yet (warning cri-dockerd-unverified says so).
CRI_DOCKERD_SHA256: dict[str, dict[str, str]] = {
    "0.3.24": {"amd64": "dd4b7f514c248a3aaca398f467430a4c58aae9a77ea8b96a2f5b5d6fba0948d1",
               "arm64": "c783a03735887c4a8fc894bd4cf7a1c0defef3ecf50a4d79ff31eed45c26b17e"},
    "0.3.23": {"amd64": "c7fe5db7f9396186193b58ded0e62a31eca7b3c58ad8691d57017986f96482ee",
               "arm64": "a78037d2d2e9c52c48372a5cbba7b94b1c57be5759449beef29cfe03cbe6f14b"},
    "0.3.22": {"amd64": "6621a96a885c82844d12318de00f510eae3459871cf1ad47317f38dd242f9a03",
               "arm64": "3260b214c9b12dbf0cbf4d60410c45aacfc31ba52aa7b74164135968e8950cb6"},
    "0.3.21": {"amd64": "6c35838bc4b1aef74f9113670e114ca729a5f295f9457b226791e18e86e91698",
               "arm64": "35de6b1e8eba11d8ba6d71fa7499cb3d610a1e7b866c9d43b7f87029e3a769cd"},
    "0.3.20": {"amd64": "2ce46d6bbd7f6a7e06e211836c201fdc2311111913eccc63a03f6ef4fe1958fc",
               "arm64": "e6b4661c51c832ee1cbbb75d1c8b086fa803acc153d400454c3b8cf324547d89"},
    "0.3.18": {"amd64": "937578ddcdb28c71afded3fda25d555e0c9e6d396668977ff98228d55886dc79",
               "arm64": "d16204a4f01685ba67319adb3acc6a6f3e62d8bcfd87bc67f5e08f7332515a9d"},
    "0.3.17": {"amd64": "5568d571c2cfee7a31ce0b35b7fcc65b96c85b573ee6645151c4d022ed92a626",
               "arm64": "761ee6db946ff2c8da04e57833dbbca8e5c38bc3f5b8e84bda689b1b7260c36f"},
    "0.3.16": {"amd64": "cc7f181ce850130dc375515c54cd8a27e1e862252abc5b7eade7b4a03ddabd8e",
               "arm64": "0ab930b6f7ab87697cd94c954d01e19fdd5b5d65810662effb957c5db49a55d4"},
    "0.3.15": {"amd64": "4779b7c3663f002871e79ecf6aa8eb48d0bb74df035baecf56b816deb21d12c4",
               "arm64": "39e430378c9c08a1d5056426e3c772ae50416ffeadbe720fa63a853c475fd5a4"},
    "0.3.14": {"amd64": "89096dff11b60c8d4f061ee88751c895650a3ef6db5c19d63ab22a1aeb42a5b3",
               "arm64": "12c5538887ccea5ec363337dbb50ff52f3b020c93d65649ee1a906c4ec994bf7"},
    "0.3.13": {"amd64": "b902eef9bd02529e73a03078a1234c038cd9a12cd86af19970e4f8596f95df26",
               "arm64": "a4a3d18f26902631b8323c6b6d87925f8ceff626b21dbc1d160aca84454f9b69"},
    "0.3.12": {"amd64": "bf0890018cb339a313b6d52e994fe2628f5b6d5f005cec39adb171f055691c96",
               "arm64": "23520fc42dcdcb9f44b0edb555a5d760eedde52a230750e21227fbb258f514b5"},
    "0.3.11": {"amd64": "b2475988f3b86d85c7835269121171e35c92454ad5f4cd6252183b0fccd74d63",
               "arm64": "877f635a7005b393f7aab24ca4b1cd7bdfb3b967d055e858408240c86e3cab9a"},
    "0.3.10": {"amd64": "3e19ef525e02d2d1dfd42e8d661ee45b4bc8a49a6dcafd8baa578bdb3a23aeb6",
               "arm64": "24d2d9cdbb4ed4bda4b0838edb52104ac7a4e2212a0ee05b177de0ae5b6a4a9a"},
    "0.3.9": {"amd64": "a6d9b4b796e9eff830311a2349d259507302cb3955dd07b78296b91e40e8b433",
              "arm64": "f5051002b4f95b0e8fe7fbd5f8de4493350e010834d2a8b647f2b26c45c6c203"},
    "0.3.8": {"amd64": "e12ea6df8228b7d0794c930d32117c4e5a3dcf25a56c3facdf7006289ec6383c",
              "arm64": "64286af171785f0facb72cf364867600b4db19f43a01db49b8b364f5d04aadae"},
    "0.3.7": {"amd64": "518c5d5345085f36d311f274208705d7fdb79337a80c256871ce941d5a7d47a1",
              "arm64": "8da54563ee7ddee36b1adf1f96b3b7b97ec2bc0ec23559b89d9af8eae5e62d9e"},
    "0.3.6": {"amd64": "cf271d65abee88c0c0a6d9dacb151913bf37d25d45913a7e04b09efe408eae18",
              "arm64": "793b8f57cecf734c47bface10387a8e90994c570b516cb755900f21ebd0a663b"},
    "0.3.5": {"amd64": "30d47bd89998526d51a8518f9e8ef10baed408ab273879ee0e30350702092938",
              "arm64": "c20014dc5a71e6991a3bd7e1667c744e3807b5675b1724b26bb7c70093582cfe"},
}


def cri_dockerd_sum(version: str, arch: str) -> str | None:
    """The release tarball's sha256 from the table above, or None when k8sseed has none."""
    return CRI_DOCKERD_SHA256.get(version, {}).get(arch)


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
# Where PureLB's release manifests (install-nobgp-v{version}.yaml on its GitHub releases) name the allocator and
# lbnodeagent images: purelb/purelb .github/workflows/ci.yml builds both with ko into KO_DOCKER_REPO
# ghcr.io/purelb/purelb, tagged with the release tag (v{version}), and generates the release manifests in the
# same run (seen for v0.16.0: ghcr.io/purelb/purelb/allocator:v0.16.0). Releases before the GitHub move named
# registry.gitlab.com/purelb/purelb/... (v0.13.0); k8sseed takes 0.15 and newer only. 0.15.x: unverified.
PURELB_REGISTRY = "ghcr.io/purelb/purelb"
PURELB_IMAGES = ("allocator", "lbnodeagent")

# The Tigera operator release that each Calico release's manifests/tigera-operator.yaml deploys
# (quay.io/tigera/operator:v{operator}; charts/tigera-operator/values.yaml tigeraOperator.version).
# - 3.30.3 -> 1.38.6: projectcalico/calico charts/tigera-operator/values.yaml (calicoctl tag v3.30.3) read.
# - 3.25.2 -> 1.29.6, 3.30.2 -> 1.38.3: copies of that values.yaml in third-party repositories.
# - 3.26.4 -> 1.30.9, 3.28.2 -> 1.34.5, 3.29.1 -> 1.36.2, 3.29.2 -> 1.36.5, 3.32.0 -> 1.42.0, 3.32.1 -> 1.42.3:
#   third-party image lists for air-gapped installs (not read in Calico's own files).
# - 3.27.4 -> 1.32.10 and 3.29.3 -> 1.36.7: unverified (from Calico's release notes as remembered, not read
#   anywhere here); `k8sseed images` warns when it uses them.
CALICO_OPERATOR: dict[str, str] = {
    "3.25.2": "1.29.6", "3.26.4": "1.30.9", "3.27.4": "1.32.10", "3.28.2": "1.34.5", "3.29.1": "1.36.2",
    "3.29.2": "1.36.5", "3.29.3": "1.36.7", "3.30.2": "1.38.3", "3.30.3": "1.38.6", "3.32.0": "1.42.0",
    "3.32.1": "1.42.3",
}
CALICO_OPERATOR_UNVERIFIED = frozenset({"3.27.4", "3.29.3"})
# The registry the operator pulls Calico's component images from when the Installation names none
# (tigera/operator pkg/components/images.go CalicoRegistry): "docker.io/" up to Calico 3.29 (operator source of
# 2022 and 2024 read); "quay.io/" from 3.30 (projectcalico/calico#10025, merged 2025-03: "Updated Calico to use
# quay.io as the default image registry"; tigera/docs#2353: v3.31.0 pulls quay.io images; 3.32.x image lists).
CALICO_QUAY_SINCE = (3, 30, 0)
# The component images the operator deploys with an Installation (image path calico/, tag v{calico}): node, cni,
# kube-controllers, typha, the CSI driver and its registrar, the FlexVolume driver; apiserver runs once an
# APIServer resource exists and is listed so that a site's mirror has it.
CALICO_COMPONENTS = ("node", "cni", "kube-controllers", "typha", "apiserver", "csi", "node-driver-registrar",
                     "pod2daemon-flexvol")


# etcd releases for the external-etcd topology: the release tarball's sha256 per arch
# (etcd-v{version}-linux-{arch}.tar.gz from github.com/etcd-io/etcd/releases). Sums as listed in kubespray's
# checksum table: 3.5.24-3.5.27 from roles/kubespray_defaults/vars/main/checksums.yml, etcd_binary_checksums, at
# 005bdce7f1867958838a2d0bb4f7e67893d98f64 (it lists no 3.6 release there); 3.5.6-3.5.12 from
# roles/kubespray-defaults/defaults/main/checksums.yml at 011b76d5, the same sums as that later file; 3.5.6
# cross-checked with a second, independent table. 3.5.x serves Kubernetes 1.24 to 1.36 (kubeadm's own etcd image
# for those minors is a 3.5 or 3.6 release; 3.4 clients and servers speak the same v3 API).
ETCD_RELEASES: dict[str, dict[str, str]] = {
    "3.5.27": {"amd64": "0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
               "arm64": "1277309f540c5a0329c428f95455c9f76d24f768c8d28fd2753e891c379053fa"},
    "3.5.26": {"amd64": "0a682a91201dc8351d507210bc30b021a11e254eab806f03224b51e8fad29abb",
               "arm64": "93ac1667df0e178ea6d152476ce4088df4075604fe4bc7f85f4719e863cd030b"},
    "3.5.25": {"amd64": "168af82b59772e1811a9af7b358d42f5c6df44e0d9767afb006ecf12c4bbd607",
               "arm64": "419dce0b679df31cc45201ef2449b7a6a48e9d241af01741957c9ac86a35badc"},
    "3.5.24": {"amd64": "042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191",
               "arm64": "efc01f6b3fbef0f000cb53bcad4845c116d7fdd8769ca39d9c40d2fe4d2e509f"},
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
# The newest 3.5 release with known sums: it passes every minor's kubeadm minimum (3.5.24 at most, above), and
# etcd asks 3.5.26 or newer of a cluster before it moves to 3.6 (etcd.io/blog/2025/zombie_members_upgrade).
ETCD_DEFAULT = "3.5.27"


def etcd_version_tuple(text: str) -> tuple[int, ...]:
    """'3.5.27' -> (3, 5, 27), for comparing etcd releases."""
    return tuple(int(part) for part in text.split("."))


def kubeadm_etcd_problem(kubernetes: str, etcd: str) -> str | None:
    """Why kubeadm init of this Kubernetes release refuses this external etcd release, or None."""
    facts = facts_for(kubernetes)
    if facts is None or etcd_version_tuple(etcd) >= etcd_version_tuple(facts.min_external_etcd):
        return None
    fits = newest_minor_taking_etcd(etcd)
    other_minor = f", or Kubernetes {fits.minor_text} or older" if fits else ""
    return (f"etcd {etcd} is older than {facts.min_external_etcd}, the oldest external etcd that kubeadm "
            f"{facts.minor_text} accepts (its preflight check ExternalEtcdVersion fails kubeadm init); use etcd "
            f"{ETCD_DEFAULT} (the default: leave etcd.version out) or another release >= "
            f"{facts.min_external_etcd}{other_minor}")


def newest_minor_taking_etcd(etcd: str) -> MinorFacts | None:
    """The newest minor whose kubeadm init takes this release as its external etcd (the minimums only rise)."""
    fits = [f for f in VERSION_TABLE.values() if etcd_version_tuple(etcd) >= etcd_version_tuple(f.min_external_etcd)]
    return max(fits, key=lambda f: f.minor, default=None)
