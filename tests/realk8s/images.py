#!/usr/bin/env python3
"""The control-plane images kubeadm pulls, built from real binaries without a Docker engine, for the VM proof.

Each image is an OCI image layout (one folder per image, the tag as its ref name) whose layers are tar files
written here with fixed owners and mtimes, so a rebuild from the same inputs is byte-identical. Names and tags
are never guessed: `kubeadm config images list` of the kubeadm in --kubernetes-bin says them.

    python3 tests/realk8s/images.py --kubernetes-bin DIR --etcd-bin DIR --out DIR
        [--coredns-bin DIR] [--push HOST:PORT/PREFIX --ca FILE] [--format v2s2|oci] [--docker-archive REPO]

kube-proxy's image carries iptables (legacy and nft), ipset, conntrack and nft from Debian's packages (apt-get
download), with exactly the shared libraries their ELF headers ask for, and tests/realk8s/iptables-wrapper.sh
picking the node's iptables backend. pause is tests/realk8s/pause.c, built with gcc -static.
Python 3 standard library only; skopeo pushes (tests/realk8s/registry.py serves a TLS registry).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
PAUSE_SOURCE = HERE / "pause.c"
IPTABLES_WRAPPER = HERE / "iptables-wrapper.sh"
DEFAULT_REPOSITORY = "registry.k8s.io"
CACHE = Path(os.environ.get("K8SSEED_REAL_CACHE", "/var/cache/k8sseed-real"))

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Upstream's distroless bases run as these users: root for the control plane, 65535 for pause, 65532 for CoreDNS.
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n"

# kube-proxy's netfilter tools and what they link to, from Debian's packages; the ELF closure picks the files.
NETFILTER_PACKAGES = (
    "iptables", "libip4tc2", "libip6tc2", "libxtables12", "libmnl0", "libnetfilter-conntrack3", "libnfnetlink0",
    "libnftnl11", "ipset", "libipset13", "conntrack", "nftables", "libnftables1", "libedit2", "libjansson4",
    "libgmp10", "libbsd0", "libmd0", "libtinfo6", "libc6", "busybox-static",
)
NETFILTER_PROGRAMS = ("usr/sbin/xtables-legacy-multi", "usr/sbin/xtables-nft-multi", "usr/sbin/ipset",
                      "usr/sbin/conntrack", "usr/sbin/nft")
XTABLES_MODULES = "usr/lib/x86_64-linux-gnu/xtables"
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64")
IPTABLES_NAMES = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")
# The applets iptables-wrapper.sh runs, plus a shell to look around with `docker exec`.
BUSYBOX_APPLETS = ("sh", "grep", "rm", "ln", "timeout", "basename", "ls", "cat")

# The file capability upstream's CoreDNS image sets (setcap cap_net_bind_service=+ep /coredns): vfs_cap_data rev 2.
CAP_NET_BIND_SERVICE = 10
CORE_DNS_FILE_CAPS = struct.pack("<IIIII", 0x02000001, 1 << CAP_NET_BIND_SERVICE, 0, 0, 0)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


class ImageError(Exception):
    """An image that cannot be built or pushed as asked; the CLI prints it and exits 1."""


@dataclass(frozen=True)
class Entry:
    """One file of a layer: a regular file (from `source` or `data`), a symlink (`link`) or a directory."""

    path: str
    mode: int = 0o755
    source: Path | None = None
    data: bytes | None = None
    link: str | None = None
    directory: bool = False
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = "0"
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KubeadmImage:
    """One line of `kubeadm config images list`: registry.k8s.io/coredns/coredns:v1.14.2 → name coredns."""

    reference: str

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[1]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    layout: Path
    manifest_digest: str
    size: int
    binary_version: str
    layers: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "tag": self.tag, "layout": str(self.layout), "digest": self.manifest_digest,
                "size": self.size, "binary_version": self.binary_version, "layers": list(self.layers)}


# --- kubeadm --------------------------------------------------------------------------------------------------------

def kubeadm_version(kubeadm: Path) -> str:
    out = subprocess.run([str(kubeadm), "version", "-o", "short"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def kubeadm_images(kubeadm: Path, repository: str = DEFAULT_REPOSITORY,
                   kubernetes_version: str | None = None) -> list[KubeadmImage]:
    """The images kubeadm pulls for its own version (or `kubernetes_version`) from `repository`."""
    version = kubernetes_version or kubeadm_version(kubeadm)
    out = subprocess.run([str(kubeadm), "config", "images", "list", "--kubernetes-version", version,
                          "--image-repository", repository], capture_output=True, text=True)
    if out.returncode != 0:
        raise ImageError(f"kubeadm config images list failed: {out.stderr.strip()}")
    return [KubeadmImage(line.strip()) for line in out.stdout.splitlines() if line.strip()]


def program_version(program: Path) -> str:
    """The first line of `program --version` (or `-v` for pause), for images.json and the tag check."""
    flag = "-v" if program.name == "pause" else "--version"
    out = subprocess.run([str(program), flag], capture_output=True, text=True, timeout=60)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else ""


# --- layers ---------------------------------------------------------------------------------------------------------

class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to `sink`."""

    def __init__(self, sink: io.BufferedIOBase | None) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha256.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Every entry once, in path order, with a 0755 directory for each parent not listed."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = str(PurePosixPath(entry.path))
        for parent in PurePosixPath(path).parents:
            if str(parent) != ".":
                by_path.setdefault(str(parent), Entry(str(parent), directory=True))
        by_path[path] = Entry(path, entry.mode, entry.source, entry.data, entry.link, entry.directory, entry.xattrs)
    return [by_path[p] for p in sorted(by_path)]


def _tar_info(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path + ("/" if entry.directory else ""))
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    info.mode = entry.mode
    if entry.directory:
        info.type = tarfile.DIRTYPE
    elif entry.link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
    if entry.xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in entry.xattrs}
    return info


def write_layer(entries: Iterable[Entry], blobs: Path, mtime: int, level: int) -> tuple[str, str, int]:
    """Writes a gzip'd tar of `entries` into blobs/; returns (diff_id, digest, compressed size)."""
    blobs.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=blobs, delete=False) as raw:
        compressed = _Digesting(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=level, mtime=0, filename="") as zipped:
            uncompressed = _Digesting(zipped)  # type: ignore[arg-type]
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT,
                              encoding="utf-8") as tar:
                for entry in _with_parents(entries):
                    info = _tar_info(entry, mtime)
                    if info.isreg():
                        data = entry.data if entry.source is None else entry.source.read_bytes()
                        info.size = len(data or b"")
                        tar.addfile(info, io.BytesIO(data or b""))
                    else:
                        tar.addfile(info)
    digest = compressed.sha256.hexdigest()
    os.replace(raw.name, blobs / digest)
    os.chmod(blobs / digest, 0o644)
    return f"sha256:{uncompressed.sha256.hexdigest()}", f"sha256:{digest}", compressed.size


def _put_json(blobs: Path, document: dict[str, object]) -> tuple[str, int]:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def write_layout(layout: Path, tag: str, layers: list[list[Entry]], config: ImageConfig, mtime: int,
                 level: int = 6) -> tuple[str, int, tuple[str, ...]]:
    """An OCI image layout holding one image tagged `tag`; returns (manifest digest, total size, layer digests)."""
    if layout.exists():
        shutil.rmtree(layout)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    written = [write_layer(entries, blobs, mtime, level) for entries in layers]
    created = _rfc3339(mtime)
    image_config: dict[str, object] = {"Env": [PATH_ENV], "User": config.user, "WorkingDir": "/"}
    if config.entrypoint:
        image_config["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        image_config["Cmd"] = list(config.cmd)
    if config.exposed_ports:
        image_config["ExposedPorts"] = {port: {} for port in config.exposed_ports}
    if config.labels:
        image_config["Labels"] = dict(config.labels)
    config_digest, config_size = _put_json(blobs, {
        "architecture": "amd64", "os": "linux", "created": created, "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id for diff_id, _, _ in written]},
        "history": [{"created": created, "created_by": "k8sseed tests/realk8s/images.py"} for _ in written],
    })
    manifest_digest, manifest_size = _put_json(blobs, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": size} for _, digest, size in written],
    })
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"}, "annotations": {REF_NAME: tag}}]}, sort_keys=True))
    total = config_size + manifest_size + sum(size for _, _, size in written)
    return manifest_digest, total, tuple(digest for _, digest, _ in written)


def _rfc3339(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_entries() -> list[Entry]:
    """What the distroless bases give every image: users, name service order and a sticky /tmp."""
    return [
        Entry("etc/passwd", 0o644, data=PASSWD.encode()),
        Entry("etc/group", 0o644, data=GROUP.encode()),
        Entry("etc/nsswitch.conf", 0o644, data=b"hosts: files dns\n"),
        Entry("tmp", 0o1777, directory=True),
        Entry("home/nonroot", 0o700, directory=True),
    ]


# --- kube-proxy's netfilter tools -----------------------------------------------------------------------------------

def elf_needs(path: Path) -> tuple[str | None, list[str]]:
    """(PT_INTERP, DT_NEEDED names) of a 64-bit little-endian ELF file; (None, []) for anything else."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None, []
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    interp = None
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, _ in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[sh_link][4]
        for off in range(sh_offset, sh_offset + sh_size, 16):
            tag, value = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab_offset + value)
                needed.append(data[strtab_offset + value:end].decode())
    return interp, needed


def download_debs(packages: Iterable[str], cache: Path) -> list[Path]:
    """Debian's .debs of `packages` for this machine's release, downloaded once into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = list(packages)
    present = {p.name.split("_", 1)[0]: p for p in cache.glob("*.deb")}
    missing = [p for p in wanted if p not in present]
    if missing:
        out = subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", *missing],
                             cwd=cache, capture_output=True, text=True)
        if out.returncode != 0:
            raise ImageError(f"apt-get download {' '.join(missing)} failed (apt-get update first?): "
                             f"{out.stderr.strip()}")
        present = {p.name.split("_", 1)[0]: p for p in cache.glob("*.deb")}
    return [present[p] for p in wanted]


def _merged_usr(rel: str) -> str:
    """Debian 12's .debs still ship /lib, /lib64, /bin and /sbin; the image has them as links into /usr."""
    first, _, rest = rel.partition("/")
    return f"usr/{first}/{rest}" if first in ("lib", "lib64", "bin", "sbin") else rel


class Staging:
    """The .debs unpacked into one folder, to walk like the image's future root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def unpack(self, debs: Iterable[Path]) -> None:
        raw = self.root.parent / (self.root.name + ".raw")
        raw.mkdir(parents=True)
        self.root.mkdir(parents=True)
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(raw)], check=True)
        for path in sorted(raw.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            target = self.root / _merged_usr(str(path.relative_to(raw)))
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() and not target.is_symlink():
                os.rename(path, target)
        shutil.rmtree(raw)

    def link_target(self, rel: str) -> str | None:
        """Where the symlink `rel` points, relative to the root (absolute targets are the image's root)."""
        path = self.root / rel
        if not path.is_symlink():
            return None
        link = os.readlink(path)
        target = link.lstrip("/") if link.startswith("/") else str(PurePosixPath(rel).parent / link)
        return _merged_usr(os.path.normpath(target))

    def find_library(self, name: str) -> str:
        for directory in LIBRARY_DIRS:
            candidate = f"{directory}/{name}"
            if (self.root / candidate).exists() or (self.root / candidate).is_symlink():
                return candidate
        raise ImageError(f"no {name} in the unpacked packages: add its Debian package to NETFILTER_PACKAGES")

    def closure(self, roots: Iterable[str]) -> set[str]:
        """`roots`, their interpreter and every shared library they need, transitively, with the symlinks
        that lead to each (paths relative to the root)."""
        keep: set[str] = set()
        todo = list(roots)
        while todo:
            rel = _merged_usr(todo.pop())
            if rel in keep:
                continue
            keep.add(rel)
            target = self.link_target(rel)
            if target is not None:
                todo.append(target)
                continue
            interp, needed = elf_needs(self.root / rel)
            if interp:
                todo.append(interp.lstrip("/"))
            todo.extend(self.find_library(name) for name in needed)
        return keep

    def entries(self, paths: Iterable[str]) -> list[Entry]:
        out = []
        for rel in sorted(paths):
            path = self.root / rel
            if path.is_symlink():
                out.append(Entry(rel, link=os.readlink(path)))
            else:
                out.append(Entry(rel, path.stat().st_mode & 0o7777, source=path))
        return out


def netfilter_entries(staging: Staging) -> list[Entry]:
    """iptables (legacy and nft, with every xtables extension), ipset, conntrack, nft and busybox, with their
    libraries, iptables-wrapper.sh behind the six iptables names, and /lib, /bin and /sbin as links into /usr."""
    modules = sorted(f"{XTABLES_MODULES}/{p.name}" for p in (staging.root / XTABLES_MODULES).glob("*.so"))
    aliases = [str(p.relative_to(staging.root)) for p in sorted((staging.root / "usr/sbin").iterdir())
               if p.is_symlink() and re.fullmatch(r"ip6?tables-(legacy|nft)(-save|-restore)?", p.name)]
    keep = staging.closure([*NETFILTER_PROGRAMS, *modules, *aliases, "usr/bin/busybox"])
    entries = staging.entries(keep)
    entries += [Entry(f"usr/bin/{applet}", link="busybox") for applet in BUSYBOX_APPLETS]
    entries.append(Entry("usr/sbin/iptables-wrapper", 0o755, source=IPTABLES_WRAPPER))
    entries += [Entry(f"usr/sbin/{name}", link="iptables-wrapper") for name in IPTABLES_NAMES]
    entries += [Entry(name, link=f"usr/{name}") for name in ("bin", "sbin", "lib", "lib64")]
    entries.append(Entry("run", 0o755, directory=True))
    entries.append(Entry("var/run", link="../run"))
    return entries


# --- pause ----------------------------------------------------------------------------------------------------------

def build_pause(out: Path) -> Path:
    """tests/realk8s/pause.c as a static, stripped executable at out/pause."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "pause"
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ImageError("no C compiler: apt-get install gcc libc6-dev (pause is built from tests/realk8s/pause.c)")
    subprocess.run([cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", str(target),
                    str(PAUSE_SOURCE)], check=True)
    return target


# --- the images -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Inputs:
    kubernetes_bin: Path
    etcd_bin: Path
    coredns_bin: Path | None
    work: Path
    deb_cache: Path

    def binary(self, folder: Path, name: str) -> Path:
        """folder/name, which must be statically linked: only kube-proxy's image carries shared libraries."""
        path = folder / name
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ImageError(f"{path}: no such executable (make real-k8s builds it)")
        interp, _ = elf_needs(path)
        if interp is not None:
            raise ImageError(f"{path} is dynamically linked ({interp}): the image has no libraries for it; "
                             "build it with CGO_ENABLED=0 (tests/realk8s/build.sh does)")
        return path


Recipe = tuple[list[list[Entry]], ImageConfig, Path]  # layers, config, the program whose --version is recorded


def _control_plane_image(name: str, inputs: Inputs) -> Recipe:
    """The binary at /usr/local/bin (upstream's entrypoint is go-runner; kubeadm's static pods name the binary)."""
    binary = inputs.binary(inputs.kubernetes_bin, name)
    program = f"usr/local/bin/{name}"
    return [base_entries(), [Entry(program, source=binary)]], ImageConfig(entrypoint=(f"/{program}",)), binary


def _kube_proxy_image(name: str, inputs: Inputs) -> Recipe:
    binary = inputs.binary(inputs.kubernetes_bin, name)
    staging = Staging(inputs.work / "kube-proxy-root")
    if not staging.root.exists():
        staging.unpack(download_debs(NETFILTER_PACKAGES, inputs.deb_cache))
    layers = [base_entries(), netfilter_entries(staging), [Entry("usr/local/bin/kube-proxy", source=binary)]]
    return layers, ImageConfig(entrypoint=("/usr/local/bin/kube-proxy",)), binary


def _etcd_image(name: str, inputs: Inputs) -> Recipe:
    etcd = inputs.binary(inputs.etcd_bin, "etcd")
    tools = [Entry(f"usr/local/bin/{tool}", source=inputs.binary(inputs.etcd_bin, tool))
             for tool in ("etcd", "etcdctl", "etcdutl") if (inputs.etcd_bin / tool).exists()]
    config = ImageConfig(cmd=("/usr/local/bin/etcd",), exposed_ports=("2379/tcp", "2380/tcp"))
    return [base_entries(), tools], config, etcd


def _pause_image(name: str, inputs: Inputs) -> Recipe:
    pause = build_pause(inputs.work / "pause-bin")
    return [base_entries(), [Entry("pause", source=pause)]], ImageConfig(entrypoint=("/pause",), user="65535:65535"), \
        pause


def _coredns_image(name: str, inputs: Inputs) -> Recipe:
    if inputs.coredns_bin is None:
        raise ImageError("no --coredns-bin: CoreDNS is built by tests/realk8s/build.sh coredns-<version>")
    coredns = inputs.binary(inputs.coredns_bin, "coredns")
    layer = [Entry("coredns", source=coredns, xattrs=(("security.capability", CORE_DNS_FILE_CAPS),))]
    config = ImageConfig(entrypoint=("/coredns",), user="65532:65532", exposed_ports=("53/tcp", "53/udp"))
    return [base_entries(), layer], config, coredns


# kubeadm's image names (the last path component of each `kubeadm config images list` line) → how to build them.
RECIPES = {
    "kube-apiserver": _control_plane_image,
    "kube-controller-manager": _control_plane_image,
    "kube-scheduler": _control_plane_image,
    "kube-proxy": _kube_proxy_image,
    "etcd": _etcd_image,
    "pause": _pause_image,
    "coredns": _coredns_image,
}


def build_images(inputs: Inputs, out: Path, only: Iterable[str] | None = None, mtime: int | None = None,
                 level: int = 6, log=print) -> list[BuiltImage]:
    """Every image `kubeadm config images list` names (or the `only` ones), one OCI layout each under `out`,
    with out/images.json listing them."""
    kubeadm = inputs.binary(inputs.kubernetes_bin, "kubeadm")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) if mtime is None else mtime
    wanted = set(only) if only is not None else None
    built = []
    out.mkdir(parents=True, exist_ok=True)
    inputs.work.mkdir(parents=True, exist_ok=True)
    for image in kubeadm_images(kubeadm):
        if wanted is not None and image.name not in wanted:
            continue
        if image.name == "coredns" and inputs.coredns_bin is None and wanted is None:
            log(f"images: skipping {image.reference}: no --coredns-bin")
            continue
        recipe = RECIPES.get(image.name)
        if recipe is None:
            raise ImageError(f"kubeadm lists an image this script cannot build: {image.reference}")
        layers, config, program = recipe(image.name, inputs)
        labels = (("org.opencontainers.image.version", image.tag),
                  ("org.opencontainers.image.description", "built by k8sseed tests/realk8s/images.py"))
        layout = out / image.name
        digest, size, layer_digests = write_layout(layout, image.tag, layers, replace(config, labels=labels), epoch,
                                                   level)
        version = program_version(program)
        if image.tag.split("-")[0].lstrip("v") not in version and image.name != "pause":
            log(f"images: WARNING {image.name}:{image.tag} holds a program that says {version!r}")
        built.append(BuiltImage(image.name, image.tag, layout, digest, size, version, layer_digests))
        log(f"images: {image.name}:{image.tag} {size / 1e6:.1f} MB {digest[:19]} ({version})")
    (out / "images.json").write_text(json.dumps([b.as_json() for b in built], indent=2) + "\n")
    return built


def load_built(out: Path) -> list[BuiltImage]:
    return [BuiltImage(d["name"], d["tag"], Path(d["layout"]), d["digest"], d["size"], d["binary_version"],
                       tuple(d["layers"])) for d in json.loads((out / "images.json").read_text())]


# --- push and read back ---------------------------------------------------------------------------------------------

def skopeo_policy(work: Path) -> Path:
    """A signature policy of our own, so skopeo needs no /etc/containers/policy.json (TLS is still verified)."""
    policy = work / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return policy


def cert_dir_for(ca: Path, work: Path) -> Path:
    """skopeo's --cert-dir reads every *.crt there as a CA: a folder holding only `ca` as ca.crt."""
    folder = work / "certs.d"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, folder / "ca.crt")
    return folder


def push_images(built: Iterable[BuiltImage], kubeadm: Path, destination: str, ca: Path, work: Path,
                fmt: str = "v2s2", log=print) -> list[str]:
    """Pushes every built image to where kubeadm looks with --image-repository `destination` (HOST:PORT/PREFIX);
    returns the references. v2s2 (Docker's schema 2) is what every Docker pulls; oci keeps the layouts' manifests."""
    work.mkdir(parents=True, exist_ok=True)
    by_name = {b.name: b for b in built}
    certs, policy = cert_dir_for(ca, work), skopeo_policy(work)
    pushed = []
    for image in kubeadm_images(kubeadm, destination):
        local = by_name.get(image.name)
        if local is None:
            log(f"images: not pushing {image.reference}: not built")
            continue
        if local.tag != image.tag:
            raise ImageError(f"{image.reference}: built {local.name}:{local.tag}, kubeadm wants {image.tag}")
        command = ["skopeo", "--policy", str(policy), "copy", "--quiet", "--dest-cert-dir", str(certs)]
        if fmt == "v2s2":
            command += ["--format", "v2s2"]
        out = subprocess.run([*command, f"oci:{local.layout}:{local.tag}", f"docker://{image.reference}"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise ImageError(f"skopeo copy to {image.reference} failed: {out.stderr.strip()}")
        log(f"images: pushed {image.reference}")
        pushed.append(image.reference)
    return pushed


def _manifest(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    matches = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    if not matches:
        raise ImageError(f"{layout}: no image tagged {tag}")
    return json.loads(_blob(layout, matches[0]["digest"]).read_bytes())


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def read_config(layout: Path, tag: str) -> dict:
    """The image config (Entrypoint, Cmd, User, Env under "config") of `layout`:`tag`."""
    return json.loads(_blob(layout, _manifest(layout, tag)["config"]["digest"]).read_bytes())


def docker_archives(built: Iterable[BuiltImage], kubeadm: Path, repository: str, out: Path,
                    log=print) -> list[Path]:
    """Each built image as a `docker load` archive tagged as kubeadm names it under `repository`
    (out/<name>.docker.tar), for nodes that get their images without a registry."""
    out.mkdir(parents=True, exist_ok=True)
    by_name = {b.name: b for b in built}
    written = []
    with tempfile.TemporaryDirectory(prefix="k8sseed-images-") as tmp:
        policy = skopeo_policy(Path(tmp))
        for image in kubeadm_images(kubeadm, repository):
            local = by_name.get(image.name)
            if local is None:
                continue
            archive = out / f"{image.name}.docker.tar"
            archive.unlink(missing_ok=True)
            result = subprocess.run(["skopeo", "--policy", str(policy), "copy", "--quiet",
                                     f"oci:{local.layout}:{local.tag}", f"docker-archive:{archive}:{image.reference}"],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise ImageError(f"skopeo copy to {archive} failed: {result.stderr.strip()}")
            log(f"images: {archive} ({image.reference})")
            written.append(archive)
    return written


def unpack(layout: Path, tag: str, root: Path) -> dict:
    """Applies the layers of `layout`:`tag` under `root` (no whiteouts: our images have none); returns the
    image config, to run its entrypoint from the unpacked root."""
    root.mkdir(parents=True, exist_ok=True)
    for layer in _manifest(layout, tag)["layers"]:
        with tarfile.open(_blob(layout, layer["digest"]), mode="r:*") as tar:
            # Our own layers, extracted as they are: absolute links (/lib64/ld-linux-x86-64.so.2), /tmp's sticky bit.
            tar.extractall(root, **({"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}))
    return read_config(layout, tag)


def layer_members(layout: Path, tag: str) -> Iterator[tarfile.TarInfo]:
    """Every tar header of every layer of `layout`:`tag`, in order (for owners, modes and xattrs)."""
    for layer in _manifest(layout, tag)["layers"]:
        with tarfile.open(_blob(layout, layer["digest"]), mode="r:*") as tar:
            yield from tar.getmembers()


# --- CLI ------------------------------------------------------------------------------------------------------------

def _default_coredns_bin() -> Path | None:
    found = sorted(CACHE.glob("coredns-*/bin/coredns"))
    return found[-1].parent if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-bin", type=Path, required=True, help="folder with kubeadm, kube-apiserver, ...")
    parser.add_argument("--etcd-bin", type=Path, required=True, help="folder with etcd (and etcdctl, etcdutl)")
    parser.add_argument("--coredns-bin", type=Path, default=_default_coredns_bin(),
                        help=f"folder with coredns (default: {CACHE}/coredns-*/bin if built)")
    parser.add_argument("--out", type=Path, required=True, help="one OCI layout per image, and images.json")
    parser.add_argument("--only", action="append", help="build only this image name (repeatable)")
    parser.add_argument("--push", metavar="HOST:PORT/PREFIX", help="push to this --image-repository of kubeadm's")
    parser.add_argument("--ca", type=Path, help="the CA that signed the registry's certificate (with --push)")
    parser.add_argument("--format", choices=("v2s2", "oci"), default="v2s2", help="manifest format pushed")
    parser.add_argument("--docker-archive", metavar="REPOSITORY",
                        help="also write OUT/<name>.docker.tar for `docker load`, tagged for this image repository")
    parser.add_argument("--deb-cache", type=Path, default=CACHE / "debs", help="Debian packages downloaded here")
    parser.add_argument("--gzip-level", type=int, default=6)
    args = parser.parse_args(argv)
    if args.push and not args.ca:
        parser.error("--push needs --ca")
    try:
        with tempfile.TemporaryDirectory(prefix="k8sseed-images-") as tmp:
            inputs = Inputs(args.kubernetes_bin, args.etcd_bin, args.coredns_bin, Path(tmp), args.deb_cache)
            built = build_images(inputs, args.out, args.only, level=args.gzip_level)
            if args.push:
                push_images(built, args.kubernetes_bin / "kubeadm", args.push, args.ca, Path(tmp) / "push",
                            args.format)
            if args.docker_archive:
                docker_archives(built, args.kubernetes_bin / "kubeadm", args.docker_archive, args.out)
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
