#!/usr/bin/env python3
"""Debian packages of real Kubernetes binaries, laid out like upstream's, in a signed apt repository laid out
like pkgs.k8s.io: what a site's mirror serves for mirrors.kubernetesPackages and mirrors.kubernetesKey.

  python3 tests/realk8s/apt_repo.py --version 1.36.5 --bin DIR... --out ROOT --gnupghome DIR

The bin directories hold kubeadm, kubelet and kubectl (one directory), crictl, and the CNI plugins; the
versions of cri-tools and kubernetes-cni are read from their folder names (<name>-<version>/bin) unless given.
ROOT/core:/stable:/v<minor>/deb/ gets <arch>/*.deb, Packages, Packages.gz, Release, Release.gpg, InRelease and
Release.key; other minors under ROOT stay as they are. Standard library only, plus dpkg-deb, apt-ftparchive
(apt-utils) and gpg.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import gzip
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# pkgs.k8s.io's first build of a release is <version>-1.1 (OBS: package revision 1, build 1); rebuilds count up.
REVISION = "1.1"
KUBERNETES_TOOLS = ("kubeadm", "kubelet", "kubectl")
# A directory holding these is the CNI plugins' (containernetworking/plugins builds ~20 of them).
CNI_MARKERS = ("loopback", "host-local", "bridge")
MAINTAINER = "k8sseed real-k8s test packages <real-k8s@k8sseed.test>"
HOMEPAGE = "https://kubernetes.io"
# debbuild's %{_unitdir} in upstream's debs (/lib/... on Debian 12, kubernetes/website#45529).
UNIT_DIR = "lib/systemd/system"
SIGNING_UID = "k8sseed real-k8s test repository <real-k8s@k8sseed.test>"
# dpkg-deb's level per compressor. gzip -1 (every dpkg reads it): 105 MB of kube-apiserver in 4.5 s to 34 MB on
# 2 loaded cores, where dpkg-deb's default -9 takes 27 s for 30 MB; zstd (dpkg >= 1.21.18: Debian 12, Ubuntu
# 21.10) 1.7 s, 28 MB; xz -6 190 s, 20 MB.
COMPRESSION_LEVELS = {"gzip": 1, "zstd": 3, "xz": 6, "none": 0}


class RepoError(Exception):
    """A bin directory, a version or a tool that does not let the repository be built; the message says why."""


# --- what goes into the packages ------------------------------------------------------------------------------

# The systemd unit of the kubelet package: the binary alone, restarted until kubeadm has written its config.
KUBELET_SERVICE = """\
[Unit]
Description=kubelet: the Kubernetes node agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target
# Before kubeadm init/join the kubelet exits at once for want of a config: never stop restarting it.
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

# kubeadm's drop-in for that unit: where kubeadm init/join leave the kubelet's kubeconfig, config and flags.
KUBEADM_DROP_IN = """\
# Shipped by the kubeadm package; kubeadm itself never edits this file.
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# KUBELET_KUBEADM_ARGS, written by kubeadm init and join.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# KUBELET_EXTRA_ARGS, the administrator's own flags (the kubelet package's conffile).
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

KUBELET_DEFAULTS = "KUBELET_EXTRA_ARGS=\n"

# Debian's way with a daemon, as the kubelet package has done since kubernetes/release#91: enabled and started on
# first install (it restarts every RestartSec until kubeadm init/join configures it), restarted on upgrade if
# it runs, stopped and disabled on removal. Into another root (DPKG_ROOT: dpkg --root --force-script-chrootless)
# or with no systemd running (a chroot, an image build): unit files only.
KUBELET_POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ -z "$2" ]; then
        systemctl enable --now kubelet.service
    else
        systemctl try-restart kubelet.service
    fi
fi
"""

KUBELET_PRERM = """\
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now kubelet.service || true
fi
"""

KUBELET_POSTRM = """\
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
"""


@dataclass(frozen=True)
class Placed:
    """One file of a package: where it goes, and either a file to copy or the text to write."""

    path: str
    mode: int
    source: Path | None = None
    text: str | None = None
    conffile: bool = False

    def size(self) -> int:
        return self.source.stat().st_size if self.source else len((self.text or "").encode())


@dataclass(frozen=True)
class Package:
    name: str
    version: str  # the Debian version, upstream version and revision
    section: str
    summary: str
    files: tuple[Placed, ...]
    depends: tuple[str, ...] = ()
    recommends: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)

    def deb_name(self, arch: str) -> str:
        return f"{self.name}_{self.version}_{arch}.deb"


@dataclass(frozen=True)
class Binaries:
    """The bin directories sorted out: Kubernetes' tools, crictl, the CNI plugins, and the versions of the last two."""

    kubernetes: Path
    crictl: Path
    cri_tools_version: str
    cni: Path
    cni_version: str


def _minor(version: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        raise RepoError(f"'{version}' is not a Kubernetes release (MAJOR.MINOR.PATCH, e.g. 1.36.5)")
    return int(match[1]), int(match[2])


def minor_of(version: str) -> str:
    major, minor = _minor(version)
    return f"{major}.{minor}"


def repository_path(minor: str) -> str:
    """pkgs.k8s.io's path of a minor's flat repository (the profile's mirrors.kubernetesPackages with {minor})."""
    return f"core:/stable:/v{minor}/deb"


def mirror_settings(base_url: str, fingerprint: str) -> dict[str, str]:
    """The profile's mirrors entries that point the nodes at a repository root served at base_url."""
    minor_dir = f"{base_url.rstrip('/')}/{repository_path('{minor}')}"
    return {"kubernetesPackages": f"{minor_dir}/", "kubernetesKey": f"{minor_dir}/Release.key",
            "kubernetesKeyFingerprint": fingerprint}


# Upstream's dependencies (kubernetes/release cmd/krel/templates/latest/metadata.yaml and the .spec files):
# from the first minor each row names on; kubeadm lost kubelet/kubectl/kubernetes-cni in 1.30, cri-tools in 1.32.
KUBEADM_DEPENDS: tuple[tuple[tuple[int, int], tuple[str, ...]], ...] = (
    ((1, 32), ()),
    ((1, 30), ("cri-tools (>= 1.30.0)",)),
    ((1, 28), ("kubelet (>= 1.19.0)", "kubectl (>= 1.19.0)", "kubernetes-cni (>= 1.2.0)", "cri-tools (>= 1.28.0)")),
)
# kubelet.spec: the CNI plugins from metadata.yaml, mount and util-linux; iptables only recommended
# (kubernetes/release#4518); conntrack, iproute2, ethtool (#4106), socat and ebtables (#3722) dropped.
KUBELET_DEPENDS = ("kubernetes-cni (>= 1.2.0)", "mount", "util-linux")
KUBELET_RECOMMENDS = ("iptables (>= 1.8.4)",)
OLDEST_MINOR = KUBEADM_DEPENDS[-1][0]


def kubeadm_depends(version: str) -> tuple[str, ...]:
    minor = _minor(version)
    for since, depends in KUBEADM_DEPENDS:
        if minor >= since:
            return depends
    raise RepoError(f"Kubernetes {version}: this packaging follows upstream's from "
                    f"{OLDEST_MINOR[0]}.{OLDEST_MINOR[1]} on only")


def packages(version: str, binaries: Binaries) -> tuple[Package, ...]:
    """The five packages of one Kubernetes release as upstream lays them out (the deb flavour of the specs)."""
    k8s, release = binaries.kubernetes, f"{version}-{REVISION}"
    cni_files = tuple(Placed(f"opt/cni/bin/{plugin.name}", 0o755, source=plugin)
                      for plugin in sorted(binaries.cni.iterdir()) if _is_executable(plugin))
    return (
        Package("kubeadm", release, "admin", "Kubernetes cluster bootstrap tool", (
            Placed("usr/bin/kubeadm", 0o755, source=k8s / "kubeadm"),
            Placed(f"{UNIT_DIR}/kubelet.service.d/10-kubeadm.conf", 0o644, text=KUBEADM_DROP_IN),
        ), depends=kubeadm_depends(version)),
        Package("kubelet", release, "net", "Kubernetes node agent", (
            Placed("usr/bin/kubelet", 0o755, source=k8s / "kubelet"),
            Placed(f"{UNIT_DIR}/kubelet.service", 0o644, text=KUBELET_SERVICE),
            Placed("etc/default/kubelet", 0o644, text=KUBELET_DEFAULTS, conffile=True),
            # dpkg keeps no empty directory: upstream's placeholders make it create these two.
            Placed("var/lib/kubelet/.kubelet-keep", 0o644, text=""),
            Placed("etc/kubernetes/manifests/.kubelet-keep", 0o644, text=""),
        ), depends=KUBELET_DEPENDS, recommends=KUBELET_RECOMMENDS,
            scripts={"postinst": KUBELET_POSTINST, "prerm": KUBELET_PRERM, "postrm": KUBELET_POSTRM}),
        Package("kubectl", release, "admin", "Kubernetes command-line client", (
            Placed("usr/bin/kubectl", 0o755, source=k8s / "kubectl"),
        )),
        Package("cri-tools", f"{binaries.cri_tools_version}-{REVISION}", "admin",
                "Container runtime client (crictl)", (
                    Placed("usr/bin/crictl", 0o755, source=binaries.crictl / "crictl"),
                )),
        Package("kubernetes-cni", f"{binaries.cni_version}-{REVISION}", "net",
                "Container networking (CNI) plugins", (
                    *cni_files,
                    Placed("etc/cni/net.d/.kubernetes-cni-keep", 0o644, text=""),
                )),
    )


# --- finding and checking the binaries ------------------------------------------------------------------------


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _folder_version(bin_dir: Path) -> str | None:
    """1.34.0 of .../cri-tools-1.34.0/bin (build.sh's layout); None when the folder names no version."""
    folder = bin_dir.parent.name if bin_dir.name == "bin" else bin_dir.name
    match = re.search(r"-v?(\d+(?:\.\d+)+)$", folder)
    return match[1] if match else None


def find_binaries(bin_dirs: Sequence[Path], cri_tools_version: str | None = None,
                  cni_version: str | None = None) -> Binaries:
    def holding(names: Sequence[str], what: str) -> Path:
        for directory in bin_dirs:
            if all(_is_executable(directory / name) for name in names):
                return directory
        raise RepoError(f"no bin directory among {', '.join(map(str, bin_dirs)) or '(none)'} holds {what} "
                        f"({', '.join(names)}): build it (make real-k8s) or add its --bin")

    def versioned(directory: Path, given: str | None, what: str, flag: str) -> str:
        found = given or _folder_version(directory)
        if not found or not re.fullmatch(r"\d+(\.\d+)+", found):
            raise RepoError(f"the version of {what} in {directory} is not in its folder name "
                            f"(<name>-<version>/bin): give {flag}")
        return found

    kubernetes = holding(KUBERNETES_TOOLS, "Kubernetes' tools")
    crictl = holding(("crictl",), "cri-tools")
    cni = holding(CNI_MARKERS, "the CNI plugins")
    return Binaries(kubernetes, crictl, versioned(crictl, cri_tools_version, "crictl", "--cri-tools-version"),
                    cni, versioned(cni, cni_version, "the CNI plugins", "--cni-version"))


def binary_versions(kubernetes: Path) -> dict[str, str]:
    """What each tool says it is, asked the way the node's bootstrap asks (binary_version in bootstrap.sh.j2)."""

    def run(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
        except OSError as error:
            return f"(cannot run: {error.strerror})"

    kubectl = run(str(kubernetes / "kubectl"), "version", "--client", "-o", "json")
    try:
        kubectl_version = json.loads(kubectl)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        kubectl_version = kubectl.strip()
    kubelet = run(str(kubernetes / "kubelet"), "--version").split()
    return {
        "kubeadm": run(str(kubernetes / "kubeadm"), "version", "-o", "short").strip(),
        "kubelet": kubelet[1] if len(kubelet) == 2 else " ".join(kubelet),
        "kubectl": kubectl_version,
    }


def check_release(version: str, binaries: Binaries) -> None:
    """The node refuses a kubeadm/kubelet/kubectl of another release than the profile's: so does the packaging;
    and cri-tools is packaged as the version its crictl says it is."""
    wrong = {tool: said for tool, said in binary_versions(binaries.kubernetes).items() if said != f"v{version}"}
    if wrong:
        said = ", ".join(f"{tool} says {said or '(nothing)'}" for tool, said in wrong.items())
        raise RepoError(f"the binaries in {binaries.kubernetes} are not Kubernetes v{version}: {said}")
    crictl = subprocess.run([str(binaries.crictl / "crictl"), "--version"], capture_output=True, text=True,
                            timeout=60).stdout.strip()
    if crictl != f"crictl version v{binaries.cri_tools_version}":
        raise RepoError(f"{binaries.crictl / 'crictl'} says '{crictl}', not crictl version "
                        f"v{binaries.cri_tools_version}: fix the folder name or give --cri-tools-version")


# --- building -------------------------------------------------------------------------------------------------


def host_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _control(package: Package, arch: str, installed_kib: int) -> str:
    fields = [("Package", package.name), ("Version", package.version), ("Architecture", arch),
              ("Maintainer", MAINTAINER), ("Installed-Size", str(installed_kib))]
    if package.depends:
        fields.append(("Depends", ", ".join(package.depends)))
    if package.recommends:
        fields.append(("Recommends", ", ".join(package.recommends)))
    fields += [("Section", package.section), ("Priority", "optional"), ("Homepage", HOMEPAGE),
               ("Description", f"{package.summary}\n Built by k8sseed's tests from binaries of release "
                                f"{package.version.rsplit('-', 1)[0]}, laid out like the pkgs.k8s.io package.")]
    return "".join(f"{name}: {value}\n" for name, value in fields)


def _place(source: Path, dest: Path, mode: int) -> None:
    """A hard link where the cache and the staging directory share a file system and the mode is already right
    (a release's binaries weigh ~310 MB; a chmod through the link would change the cache's file), else a copy."""
    if source.stat().st_mode & 0o7777 == mode:
        with contextlib.suppress(OSError):
            os.link(source, dest)
            return
    shutil.copyfile(source, dest)
    dest.chmod(mode)


def build_deb(package: Package, arch: str, out_dir: Path, compression: str = "gzip") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{package.name}.", dir=out_dir) as staging:
        root = Path(staging)
        for placed in package.files:
            dest = root / placed.path
            dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if placed.source is not None:
                _place(placed.source, dest, placed.mode)
            else:
                dest.write_text(placed.text or "")
                dest.chmod(placed.mode)
        debian = root / "DEBIAN"
        debian.mkdir(mode=0o755)
        # dpkg-gencontrol's Installed-Size: KiB of each file rounded up, one per directory.
        directories = {p for placed in package.files for p in Path(placed.path).parents if str(p) != "."}
        kib = sum(-(-placed.size() // 1024) for placed in package.files) + len(directories)
        (debian / "control").write_text(_control(package, arch, kib))
        conffiles = [f"/{placed.path}" for placed in package.files if placed.conffile]
        if conffiles:
            (debian / "conffiles").write_text("".join(f"{path}\n" for path in conffiles))
        for name, text in package.scripts.items():
            (debian / name).write_text(text)
            (debian / name).chmod(0o755)
        for directory in (root, *(p for p in root.rglob("*") if p.is_dir())):
            directory.chmod(0o755)
        deb = out_dir / package.deb_name(arch)
        subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", f"-z{COMPRESSION_LEVELS[compression]}",
                        "--build", str(root), str(deb)],
                       check=True, capture_output=True, text=True)
    return deb


# --- signing --------------------------------------------------------------------------------------------------


def gpg(gnupghome: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(gnupghome), "--batch", "--no-tty", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], check=True, capture_output=True, text=text)


def make_signing_key(gnupghome: Path, expire: str = "1y", algorithm: str = "ed25519", uid: str = SIGNING_UID) -> str:
    """A new signing key (no passphrase, expiring) in gnupghome, made for the test: its fingerprint."""
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = gpg(gnupghome, "--status-fd", "1", "--quick-gen-key", uid, algorithm, "sign", expire)
    for line in made.stdout.splitlines():
        if line.startswith("[GNUPG:] KEY_CREATED "):
            return line.split()[3]
    raise RepoError(f"gpg made no key in {gnupghome}: {made.stderr.strip()}")


def secret_key_fingerprints(gnupghome: Path) -> list[str]:
    if not gnupghome.is_dir():
        return []
    listing = gpg(gnupghome, "--with-colons", "--list-secret-keys").stdout.splitlines()
    return [listing[i + 1].split(":")[9] for i, line in enumerate(listing)
            if line.startswith("sec:") and i + 1 < len(listing) and listing[i + 1].startswith("fpr:")]


def stop_gpg_agent(gnupghome: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "all"], capture_output=True)


def armored_public_key(gnupghome: Path, fingerprint: str) -> str:
    return gpg(gnupghome, "--armor", "--export", fingerprint).stdout


def _sign_release(directory: Path, gnupghome: Path, fingerprint: str) -> None:
    # "!" pins the exact (primary) key; apt refuses SHA-1 signatures.
    sign = ["--local-user", f"{fingerprint}!", "--digest-algo", "SHA512", "--yes"]
    release = str(directory / "Release")
    gpg(gnupghome, *sign, "--clearsign", "--output", str(directory / "InRelease"), release)
    gpg(gnupghome, *sign, "--armor", "--detach-sign", "--output", str(directory / "Release.gpg"), release)


# --- the repository -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    root: Path  # what the HTTP server serves
    directory: Path  # root/core:/stable:/v<minor>/deb
    minor: str
    fingerprint: str
    debs: tuple[Path, ...]

    def url(self, base: str) -> str:
        """The deb line's URL of this minor under a server's base URL (http://127.0.0.1:PORT)."""
        return f"{base.rstrip('/')}/{repository_path(self.minor)}/"


def _index(directory: Path, arch: str, minor: str) -> None:
    """Packages, Packages.gz and an unsigned Release of directory, from the .debs in directory/<arch>."""
    for stale in ("Release", "InRelease", "Release.gpg"):
        (directory / stale).unlink(missing_ok=True)
    listing = subprocess.run(["apt-ftparchive", "packages", arch], cwd=directory, check=True,
                             capture_output=True).stdout
    (directory / "Packages").write_bytes(listing)
    with gzip.GzipFile(directory / "Packages.gz", "wb", mtime=0) as packed:
        packed.write(listing)
    options = {"Origin": "k8sseed-real-k8s", "Label": f"core:stable:v{minor}", "Architectures": arch,
               "Description": f"Kubernetes v{minor} packages of real binaries, built by k8sseed's tests"}
    args = [f"-oAPT::FTPArchive::Release::{name}={value}" for name, value in options.items()]
    release = subprocess.run(["apt-ftparchive", *args, "release", "."], cwd=directory, check=True,
                             capture_output=True).stdout
    (directory / "Release").write_bytes(release)


def build_repository(version: str, bin_dirs: Sequence[Path], root: Path, gnupghome: Path,
                     fingerprint: str | None = None, arch: str | None = None, *, cri_tools_version: str | None = None,
                     cni_version: str | None = None, compression: str = "gzip") -> Repository:
    """The packages of one release into root/core:/stable:/v<minor>/deb, indexed and signed; the debs of other
    releases of that minor already there stay, a rebuild of the same release replaces its own."""
    minor = minor_of(version)
    binaries = find_binaries(bin_dirs, cri_tools_version, cni_version)
    arch = arch or host_architecture()
    if arch == host_architecture():
        check_release(version, binaries)
    if fingerprint is None:
        found = secret_key_fingerprints(gnupghome)
        if len(found) != 1:
            raise RepoError(f"{gnupghome} holds {len(found)} secret keys: name the signing key's fingerprint")
        fingerprint = found[0]
    directory = root / repository_path(minor)
    # dpkg-deb compresses one package per process: the big three in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        debs = tuple(pool.map(lambda package: build_deb(package, arch, directory / arch, compression),
                              packages(version, binaries)))
    _index(directory, arch, minor)
    _sign_release(directory, gnupghome, fingerprint)
    (directory / "Release.key").write_text(armored_public_key(gnupghome, fingerprint))
    return Repository(root, directory, minor, fingerprint, debs)


# --- serving --------------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Served:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_as(self, host: str) -> str:
        """The base URL as another machine reaches this server (a QEMU user-net guest: 10.0.2.2)."""
        return f"http://{host}:{self.port}"


@contextlib.contextmanager
def serve(root: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[Served]:
    """root over plain HTTP (apt checks the signatures, as on pkgs.k8s.io behind its CDN) until the block ends."""
    server = http.server.ThreadingHTTPServer((host, port), functools.partial(_QuietHandler, directory=str(root)))
    # A short poll: shutdown() waits for the serving loop to look (0.5 s by default, per test).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"apt-repo {root}", daemon=True)
    thread.start()
    try:
        yield Served(host, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- command line ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", required=True, help="the Kubernetes release, e.g. 1.36.5")
    parser.add_argument("--bin", dest="bins", metavar="DIR", action="append", type=Path, default=[], required=True,
                        help="a bin directory of tests/realk8s/build.sh's cache (repeat)")
    parser.add_argument("--out", type=Path, required=True, help="the repository root (what the server serves)")
    parser.add_argument("--gnupghome", type=Path, required=True,
                        help="GnuPG home with the signing key; a new key is made there when it holds none")
    parser.add_argument("--key", help="the signing key's fingerprint, when the GnuPG home holds several")
    parser.add_argument("--arch", help="the Debian architecture (default: this machine's)")
    parser.add_argument("--cri-tools-version", help="crictl's version (default: from its folder name)")
    parser.add_argument("--cni-version", help="the CNI plugins' version (default: from their folder name)")
    parser.add_argument("--compression", choices=sorted(COMPRESSION_LEVELS), default="gzip",
                        help="of the .debs' data (default: gzip, which every dpkg reads)")
    parser.add_argument("--serve", type=int, metavar="PORT", help="then serve --out on 127.0.0.1:PORT until ^C")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        minor_of(args.version)
        find_binaries(args.bins, args.cri_tools_version, args.cni_version)  # before a key is made for nothing
        fingerprint = args.key
        if fingerprint is None and not secret_key_fingerprints(args.gnupghome):
            fingerprint = make_signing_key(args.gnupghome)
            print(f"apt-repo: made the signing key {fingerprint} in {args.gnupghome}")
        repo = build_repository(args.version, args.bins, args.out, args.gnupghome, fingerprint, args.arch,
                                cri_tools_version=args.cri_tools_version, cni_version=args.cni_version,
                                compression=args.compression)
    except RepoError as error:
        print(f"apt-repo: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"apt-repo: {' '.join(map(str, error.cmd))} failed: {(error.stderr or '').strip()}", file=sys.stderr)
        return 1
    finally:
        stop_gpg_agent(args.gnupghome)
    size = sum(deb.stat().st_size for deb in repo.debs)
    print(f"apt-repo: {repo.directory}: {', '.join(deb.name for deb in repo.debs)} "
          f"({size / 1e6:.0f} MB) signed by {repo.fingerprint} in {time.monotonic() - started:.0f} s")
    settings = mirror_settings(f"http://HOST:{args.serve or 'PORT'}", repo.fingerprint)
    print("apt-repo: profile settings, with HOST the server as the nodes reach it: mirrors: "
          + json.dumps(settings))
    if args.serve is not None:
        with serve(args.out, port=args.serve) as served:
            print(f"apt-repo: serving {args.out} on {served.url} (^C stops)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
