"""The control-plane images of the VM proof (tests/realk8s/images.py), served by a TLS registry
(tests/realk8s/registry.py): tagged as kubeadm lists them, pulled back through skopeo, and their programs run.

The realk8s tests need the real binaries (make real-k8s); the others build from stand-ins in a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import require_tool
from realk8s import images, registry
from realk8s_support import KUBERNETES_RELEASES, folder_of, real_bin, stop

# The newest release tests/realk8s builds (1.36.5): the VM proof's.
RELEASE = KUBERNETES_RELEASES[0]
VERSION = f"v{RELEASE}"
PREFIX = "k8s"

STAND_IN_KUBEADM = """#!/bin/sh
# kubeadm's `version -o short` and `config images list` for the stand-in tests, as the real v1.36.5 answers.
case "$1" in
version) echo v1.36.5 ;;
config)
    repo=registry.k8s.io
    while [ $# -gt 0 ]; do [ "$1" = --image-repository ] && repo="$2"; shift; done
    dns="$repo"; [ "$repo" = registry.k8s.io ] && dns="$repo/coredns"
    for n in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "$repo/$n:v1.36.5"; done
    echo "$dns/coredns:v1.14.2"; echo "$repo/pause:3.10.2"; echo "$repo/etcd:3.6.8-0" ;;
esac
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    # --insecure-policy skips signature policy only (no /etc/containers/policy.json needed); TLS is still checked.
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300)


def _pull(reference: str, cert_dir: Path, layout: Path, tag: str) -> subprocess.CompletedProcess[str]:
    layout.parent.mkdir(parents=True, exist_ok=True)
    return _skopeo("copy", "--quiet", "--src-cert-dir", str(cert_dir), f"docker://{reference}", f"oci:{layout}:{tag}")


# --- stand-ins ------------------------------------------------------------------------------------------------------

@pytest.fixture
def stand_ins(tmp_path: Path) -> images.Inputs:
    kube, etcd, coredns = tmp_path / "kubernetes", tmp_path / "etcd", tmp_path / "coredns"
    for folder in (kube, etcd, coredns):
        folder.mkdir()
    _script(kube / "kubeadm", STAND_IN_KUBEADM)
    _script(kube / "kube-apiserver", "#!/bin/sh\necho Kubernetes v1.36.5\n")
    _script(etcd / "etcd", "#!/bin/sh\necho etcd Version: 3.6.8\n")
    _script(etcd / "etcdctl", "#!/bin/sh\necho etcdctl version: 3.6.8\n")
    _script(coredns / "coredns", "#!/bin/sh\necho CoreDNS-1.14.2\n")
    return images.Inputs(kube, etcd, coredns, tmp_path / "work", tmp_path / "debs")


STAND_IN_IMAGES = ("kube-apiserver", "etcd", "pause", "coredns")


def test_images_are_tagged_as_kubeadm_lists_them(stand_ins: images.Inputs, tmp_path: Path) -> None:
    built = images.build_images(stand_ins, tmp_path / "out", STAND_IN_IMAGES, log=lambda _: None)
    assert {(b.name, b.tag) for b in built} == {
        ("kube-apiserver", "v1.36.5"), ("etcd", "3.6.8-0"), ("pause", "3.10.2"), ("coredns", "v1.14.2")}
    index = json.loads((tmp_path / "out" / "etcd" / "index.json").read_text())
    assert index["manifests"][0]["annotations"][images.REF_NAME] == "3.6.8-0"
    assert json.loads((tmp_path / "out" / "images.json").read_text())[0]["name"] == "kube-apiserver"


def test_rebuild_is_byte_identical(stand_ins: images.Inputs, tmp_path: Path) -> None:
    first = images.build_images(stand_ins, tmp_path / "a", STAND_IN_IMAGES, log=lambda _: None)
    second = images.build_images(stand_ins, tmp_path / "b", STAND_IN_IMAGES, log=lambda _: None)
    assert [b.manifest_digest for b in first] == [b.manifest_digest for b in second]


def test_layers_have_root_owners_fixed_mtimes_and_programs_on_path(stand_ins: images.Inputs, tmp_path: Path) -> None:
    built = {b.name: b for b in images.build_images(stand_ins, tmp_path / "out", STAND_IN_IMAGES,
                                                    mtime=1_700_000_000, log=lambda _: None)}
    members = list(images.layer_members(built["kube-apiserver"].layout, "v1.36.5"))
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 1_700_000_000)}
    assert {m.name for m in members} >= {"usr/local/bin/kube-apiserver", "etc/passwd", "tmp"}
    tmp = next(m for m in members if m.name == "tmp")
    assert tmp.mode == 0o1777


def test_coredns_may_bind_port_53_as_nonroot(stand_ins: images.Inputs, tmp_path: Path) -> None:
    """Upstream's image runs /coredns as 65532 with cap_net_bind_service=+ep; kubeadm adds NET_BIND_SERVICE."""
    built = images.build_images(stand_ins, tmp_path / "out", ["coredns"], log=lambda _: None)
    coredns = next(m for m in images.layer_members(built[0].layout, "v1.14.2") if m.name == "coredns")
    caps = coredns.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    assert caps == bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")
    layer = images._blob(built[0].layout, images._manifest(built[0].layout, "v1.14.2")["layers"][-1]["digest"])
    (tmp_path / "x").mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=security.*", "-xzf", str(layer), "-C", str(tmp_path / "x")],
                   check=True)
    getcap = subprocess.run([require_tool("getcap"), str(tmp_path / "x" / "coredns")], capture_output=True, text=True)
    assert "cap_net_bind_service=ep" in getcap.stdout, "GNU tar, like Docker, sets the capability from the layer"
    config = images.unpack(built[0].layout, "v1.14.2", tmp_path / "root")["config"]
    assert config["Entrypoint"] == ["/coredns"] and config["User"] == "65532:65532"


def test_a_dynamically_linked_program_is_refused(stand_ins: images.Inputs, tmp_path: Path) -> None:
    """Only kube-proxy's image carries shared libraries: a control-plane binary built with cgo would not start."""
    (stand_ins.kubernetes_bin / "kube-apiserver").unlink()
    (stand_ins.kubernetes_bin / "kube-apiserver").symlink_to("/usr/bin/ls")
    with pytest.raises(images.ImageError, match=r"dynamically linked .*CGO_ENABLED=0"):
        images.build_images(stand_ins, tmp_path / "out", ["kube-apiserver"], log=lambda _: None)


def test_docker_archives_are_tagged_for_the_image_repository(stand_ins: images.Inputs, tmp_path: Path) -> None:
    require_tool("skopeo")
    built = images.build_images(stand_ins, tmp_path / "out", ["pause"], log=lambda _: None)
    [archive] = images.docker_archives(built, stand_ins.kubernetes_bin / "kubeadm", "10.0.2.2:5000/k8s",
                                       tmp_path / "archives", log=lambda _: None)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["10.0.2.2:5000/k8s/pause:3.10.2"]


def test_elf_needs_reads_the_interpreter_and_libraries() -> None:
    interp, needed = images.elf_needs(Path("/usr/bin/ls"))
    assert interp == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in needed


def test_pushed_images_are_served_over_tls_and_refused_with_another_ca(stand_ins: images.Inputs,
                                                                         tmp_path: Path) -> None:
    require_tool("skopeo")
    require_tool("docker-registry")
    built = images.build_images(stand_ins, tmp_path / "out", ["pause", "etcd"], log=lambda _: None)
    tls = registry.make_test_ca(tmp_path / "tls", ["127.0.0.1"])
    other = registry.make_test_ca(tmp_path / "other-tls", ["127.0.0.1"])
    served = registry.start_registry(tmp_path / "storage", tls)
    try:
        destination = f"{served.address}/{PREFIX}"
        pushed = images.push_images(built, stand_ins.kubernetes_bin / "kubeadm", destination, tls.ca_cert,
                                    tmp_path / "push", log=lambda _: None)
        assert pushed == [f"{destination}/pause:3.10.2", f"{destination}/etcd:3.6.8-0"]
        inspected = _skopeo("inspect", "--cert-dir", str(tls.cert_dir), f"docker://{destination}/pause:3.10.2")
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["RepoTags"] == ["3.10.2"]
        refused = _skopeo("inspect", "--cert-dir", str(other.cert_dir), f"docker://{destination}/pause:3.10.2")
        assert refused.returncode != 0
        assert "certificate signed by unknown authority" in refused.stderr
        pulled = _pull(f"{destination}/pause:3.10.2", tls.cert_dir, tmp_path / "pulled", "3.10.2")
        assert pulled.returncode == 0, pulled.stderr
        _assert_pause_stops_on_sigterm(tmp_path / "pulled", "3.10.2", tmp_path / "root")
    finally:
        registry.stop_registry(served.process.pid)
    assert served.process.poll() is not None or _gone(served.process.pid)


def test_cli_builds_and_pushes_where_kubeadm_looks(stand_ins: images.Inputs, tmp_path: Path) -> None:
    require_tool("skopeo")
    require_tool("docker-registry")
    tls = registry.make_test_ca(tmp_path / "tls", ["127.0.0.1"])
    served = registry.start_registry(tmp_path / "storage", tls)
    try:
        command = [sys.executable, str(Path(images.__file__)), "--kubernetes-bin", str(stand_ins.kubernetes_bin),
                   "--etcd-bin", str(stand_ins.etcd_bin), "--out", str(tmp_path / "out"), "--only", "pause",
                   "--push", f"{served.address}/site/k8s", "--ca", str(tls.ca_cert)]
        answer = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert answer.returncode == 0, answer.stderr
        assert f"images: pushed {served.address}/site/k8s/pause:3.10.2" in answer.stdout
        unpushed = subprocess.run(command[:-2], capture_output=True, text=True, timeout=120)
        assert unpushed.returncode == 2 and "--push needs --ca" in unpushed.stderr
    finally:
        registry.stop_registry(served.process.pid)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _assert_pause_stops_on_sigterm(layout: Path, tag: str, root: Path) -> None:
    config = images.unpack(layout, tag, root)["config"]
    assert config["Entrypoint"] == ["/pause"] and config["User"] == "65535:65535"
    pause = subprocess.Popen([str(root / "pause")])
    try:
        time.sleep(0.2)
        assert pause.poll() is None, "pause exited before it was told to"
        pause.send_signal(signal.SIGTERM)
        assert pause.wait(timeout=5) == 0
    finally:
        if pause.poll() is None:
            pause.kill()


# --- the real binaries ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """Every image kubeadm lists, built from the real binaries and pushed to a TLS registry on 127.0.0.1."""
    require_tool("skopeo")
    require_tool("docker-registry")
    kubeadm = real_bin(f"kubernetes-{RELEASE}", "kubeadm")
    etcd = real_bin(folder_of("etcd-"), "etcd")
    coredns = real_bin(folder_of("coredns-"), "coredns")
    work = tmp_path_factory.mktemp("realk8s-images")
    inputs = images.Inputs(kubeadm.parent, etcd.parent, coredns.parent, work / "work", images.CACHE / "debs")
    built = images.build_images(inputs, work / "out")
    tls = registry.make_test_ca(work / "tls", ["127.0.0.1"])
    served = registry.start_registry(work / "storage", tls)
    try:
        destination = f"{served.address}/{PREFIX}"
        pushed = images.push_images(built, kubeadm, destination, tls.ca_cert, work / "push")
        yield {"work": work, "built": built, "tls": tls, "destination": destination, "pushed": pushed,
               "kubeadm": kubeadm, "storage": work / "storage"}
    finally:
        registry.stop_registry(served.process.pid)


def _pulled_root(real: dict, reference: str) -> tuple[Path, dict]:
    """The image `reference` pulled back from the registry and unpacked: (root, image config)."""
    tag = reference.rsplit(":", 1)[1]
    name = reference.rsplit(":", 1)[0].rsplit("/", 1)[1]
    layout, root = real["work"] / "pulled" / name, real["work"] / "roots" / name
    if not root.exists():
        pulled = _pull(reference, real["tls"].cert_dir, layout, tag)
        assert pulled.returncode == 0, pulled.stderr
        images.unpack(layout, tag, root)
    return root, images.read_config(layout, tag)["config"]


def _kubeadm_pod_specs(real: dict, tmp_path: Path) -> dict[str, dict]:
    """The containers kubeadm itself writes for this image repository: static pods (into a --rootfs under
    tmp_path) and the kube-proxy and CoreDNS add-ons (--print-manifest)."""
    kubeadm = str(real["kubeadm"])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "kubeadm.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
        "kubernetesVersion": VERSION, "imageRepository": real["destination"]}))
    for phase in (["control-plane", "all"], ["etcd", "local"]):
        subprocess.run([kubeadm, "init", "phase", *phase, "--config", "/kubeadm.yaml", "--rootfs", str(rootfs)],
                       check=True, capture_output=True, timeout=120)
    documents = [yaml.safe_load(p.read_text()) for p in (rootfs / "etc/kubernetes/manifests").glob("*.yaml")]
    for addon in ("kube-proxy", "coredns"):
        printed = subprocess.run([kubeadm, "init", "phase", "addon", addon, "--print-manifest",
                                  "--config", str(rootfs / "kubeadm.yaml")],
                                 check=True, capture_output=True, text=True, timeout=120).stdout
        documents += [d for d in yaml.safe_load_all(printed) if d and d.get("kind") in ("DaemonSet", "Deployment")]
    containers = {}
    for doc in documents:
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            containers[container["name"]] = container
    return containers


def _executable_in(root: Path, name: str, path_env: str) -> Path:
    """`name` as the container runtime finds it: an absolute path, or the first match on the image's PATH."""
    candidates = [name] if name.startswith("/") else [f"{d}/{name}" for d in path_env.split("=", 1)[1].split(":")]
    for candidate in candidates:
        full = root / candidate.lstrip("/")
        if full.is_file() or (full.is_symlink() and os.path.exists(full)):
            return full
    raise AssertionError(f"{name} is not in the image (PATH {path_env})")


@pytest.mark.realk8s
def test_every_image_kubeadm_lists_is_served_with_the_built_digest(real: dict) -> None:
    listed = images.kubeadm_images(real["kubeadm"], real["destination"])
    assert [i.reference for i in listed] == real["pushed"], "every listed image is built and pushed"
    built = {b.name: b for b in real["built"]}
    for image in listed:
        answer = _skopeo("inspect", "--cert-dir", str(real["tls"].cert_dir), f"docker://{image.reference}")
        assert answer.returncode == 0, f"{image.reference}: {answer.stderr}"
        assert json.loads(answer.stdout)["Layers"] == list(built[image.name].layers)


@pytest.mark.realk8s
def test_a_pull_with_another_ca_is_refused(real: dict, tmp_path: Path) -> None:
    other = registry.make_test_ca(tmp_path / "other", ["127.0.0.1"])
    reference = real["pushed"][0]
    answer = _pull(reference, other.cert_dir, tmp_path / "pulled", reference.rsplit(":", 1)[1])
    assert answer.returncode != 0
    assert "certificate signed by unknown authority" in answer.stderr


@pytest.mark.realk8s
def test_kubeadm_manifests_find_their_programs_in_the_pulled_images(real: dict, tmp_path: Path) -> None:
    """kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kube-proxy and CoreDNS as kubeadm runs
    them: the manifest's image is one we serve, its command (or the image's entrypoint) is in the image and
    says the version the tag promises."""
    expected = {"kube-apiserver": f"Kubernetes {VERSION}", "kube-controller-manager": f"Kubernetes {VERSION}",
                "kube-scheduler": f"Kubernetes {VERSION}", "kube-proxy": f"Kubernetes {VERSION}",
                "etcd": "etcd Version: {tag}\n", "coredns": "CoreDNS-{tag}\n"}
    containers = _kubeadm_pod_specs(real, tmp_path)
    assert set(containers) == set(expected)
    for name, container in containers.items():
        assert container["image"] in real["pushed"]
        root, config = _pulled_root(real, container["image"])
        argv = container.get("command") or config.get("Entrypoint") or config["Cmd"]
        program = _executable_in(root, argv[0], config["Env"][0])
        flag = "-version" if name == "coredns" else "--version"
        answer = subprocess.run(["chroot", str(root), "/" + str(program.relative_to(root)), flag],
                                capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, f"{name}: {answer.stderr}"
        tag = container["image"].rsplit(":", 1)[1].removeprefix("v").split("-")[0]  # etcd 3.6.8-0 holds 3.6.8
        assert expected[name].format(tag=tag) in answer.stdout, f"{name}: {answer.stdout}"


@pytest.mark.realk8s
def test_pause_image_waits_and_exits_on_sigterm(real: dict) -> None:
    pause = next(r for r in real["pushed"] if r.rsplit("/", 1)[1].startswith("pause:"))
    tag = pause.rsplit(":", 1)[1]
    layout = real["work"] / "pulled-pause"
    pulled = _pull(pause, real["tls"].cert_dir, layout, tag)
    assert pulled.returncode == 0, pulled.stderr
    _assert_pause_stops_on_sigterm(layout, tag, real["work"] / "pause-root")


@pytest.mark.realk8s
@pytest.mark.parametrize(("node_backend", "version_says"), [("legacy", "(legacy)"), ("nft", "(nf_tables)")])
def test_kube_proxy_image_follows_the_nodes_iptables_and_runs_ipset_conntrack_nft(
        real: dict, node_backend: str, version_says: str) -> None:
    """In a network namespace of its own, chrooted into the pulled image with only /dev from outside: a node
    whose kubelet left KUBE-IPTABLES-HINT in one backend gets that backend from the wrapper's first call, and
    every netfilter tool kube-proxy calls loads its libraries from the image."""
    proxy = next(r for r in real["pushed"] if r.rsplit("/", 1)[1].startswith("kube-proxy:"))
    root, _ = _pulled_root(real, proxy)
    (root / "dev").mkdir(exist_ok=True)
    fresh = "; ".join(f"ln -sf iptables-wrapper /usr/sbin/{name}" for name in images.IPTABLES_NAMES)
    script = ("mount --bind /dev \"$0/dev\" && chroot \"$0\" /bin/sh -euc '"
              f"{fresh}; iptables-{node_backend} -t mangle -N KUBE-IPTABLES-HINT; "
              "iptables -V; iptables-save -t mangle; ip6tables -L -n; ls -l /usr/sbin/ip6tables-restore; "
              "ipset create probe hash:ip; ipset list -n; conntrack --version; nft list ruleset'")
    answer = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script,
                             str(root)], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("iptables v") and version_says in answer.stdout.splitlines()[0]
    assert ":KUBE-IPTABLES-HINT" in answer.stdout
    assert f"-> xtables-{node_backend}-multi" in answer.stdout
    assert "probe" in answer.stdout and "conntrack v" in answer.stdout


@pytest.mark.realk8s
def test_every_elf_file_in_kube_proxy_finds_its_libraries_in_the_image(real: dict) -> None:
    """The image's own dynamic loader lists (ldd) every program and xtables extension, chrooted into it."""
    proxy = next(r for r in real["pushed"] if r.rsplit("/", 1)[1].startswith("kube-proxy:"))
    root, _ = _pulled_root(real, proxy)
    dynamic = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and any(images.elf_needs(p))]
    assert len(dynamic) > 100, "xtables-*-multi, ipset, conntrack, nft, their libraries and the xtables extensions"
    unresolved = {}
    for path in dynamic:
        inside = "/" + str(path.relative_to(root))
        listed = subprocess.run(["chroot", str(root), "/lib64/ld-linux-x86-64.so.2", "--list", inside],
                                capture_output=True, text=True, timeout=30)
        if listed.returncode != 0 or "not found" in listed.stdout:
            unresolved[inside] = listed.stdout + listed.stderr
    assert not unresolved


# --- Debian's Docker pulls them, as a node's cri-dockerd has it do ----------------------------------------------------

def _unavailable(reason: str) -> None:
    if os.environ.get("K8SSEED_REQUIRE_REAL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def _netns(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextmanager
def _docker_trusting(work: Path, tls: registry.TestCA, address: str, netns: str) -> Iterator[Callable]:
    """Debian's dockerd (docker.io 20.10) in `netns`, trusting the registry at `address` the way a node's seed
    makes it (/etc/docker/certs.d/ADDRESS/ca.crt): in a mount namespace of its own, where a folder under `work`
    stands in for /etc/docker, so the host's is left alone. Yields a function running the docker CLI."""
    for tool in ("dockerd", "docker", "containerd", "runc", "nsenter", "unshare", "ip"):
        if not shutil.which(tool):
            _unavailable(f"{tool} is not installed (apt-get install docker.io: Debian 12's Docker 20.10)")
    if os.geteuid() != 0 or not Path("/etc/docker").is_dir():
        _unavailable("needs root and /etc/docker (docker.io or docker-registry installed) to run dockerd")
    etc = work / "etc-docker"
    (etc / "certs.d" / address).mkdir(parents=True)
    shutil.copyfile(tls.ca_cert, etc / "certs.d" / address / "ca.crt")
    # Sockets under a short folder: containerd's under a pytest tmp_path pass the 108 bytes a socket path may have.
    sockets = Path(tempfile.mkdtemp(prefix="k8sseed-dk-"))
    daemon = ('mount --bind "$0" /etc/docker && exec nsenter --net="$1" dockerd --host "unix://$2/docker.sock" '
              '--exec-root "$2/exec" --data-root "$3/data" --pidfile "$3/docker.pid" '
              "--iptables=false --ip6tables=false --bridge=none")
    with (work / "dockerd.log").open("w") as log:
        process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", daemon, str(etc),
                                    f"/run/netns/{netns}", str(sockets), str(work)],
                                   stdout=log, stderr=subprocess.STDOUT)

    def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", f"unix://{sockets}/docker.sock", *args], capture_output=True,
                              text=True, timeout=timeout)

    try:
        deadline = time.monotonic() + 60
        while not (sockets / "docker.sock").exists() or docker("version", timeout=30).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not come up:\n{(work / 'dockerd.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield docker
    finally:
        stop(process)
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.mark.realk8s
def test_debian_docker_pulls_every_image_over_tls_and_runs_it_as_kubeadm_does(real: dict, tmp_path: Path) -> None:
    """Docker 20.10, trusting the test CA through certs.d, pulls every image kubeadm lists from the registry; the
    control-plane entrypoints print the release, kube-proxy's iptables runs with NET_ADMIN, CoreDNS serves :53 as
    uid 65532 under kubeadm's securityContext (all capabilities dropped but NET_BIND_SERVICE, no privilege
    escalation, read-only root), and pause stops at once on docker stop's SIGTERM with status 0."""
    with _netns("k8sseed-images") as netns:
        inside = registry.start_registry(real["storage"], real["tls"], netns=netns)
        try:
            with _docker_trusting(tmp_path / "docker", real["tls"], inside.address, netns) as docker:
                listed = images.kubeadm_images(real["kubeadm"], f"{inside.address}/{PREFIX}")
                for image in listed:
                    pulled = docker("pull", "-q", image.reference)
                    assert pulled.returncode == 0, f"{image.reference}: {pulled.stderr}"
                ref = {image.name: image.reference for image in listed}
                _assert_runs_like_kubeadm(docker, ref, tmp_path)
        finally:
            registry.stop_registry(inside.process.pid)


def _assert_runs_like_kubeadm(docker: Callable, ref: dict[str, str], tmp_path: Path) -> None:
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        ran = docker("run", "--rm", "--network", "none", ref[name], "--version")
        assert ran.stdout.strip() == f"Kubernetes {VERSION}", f"{name}: {ran.stdout} {ran.stderr}"
    etcd_tag = ref["etcd"].rsplit(":", 1)[1].split("-")[0]
    ran = docker("run", "--rm", "--network", "none", ref["etcd"], "etcd", "--version")
    assert f"etcd Version: {etcd_tag}" in ran.stdout, ran.stderr
    ran = docker("run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN", "--entrypoint", "iptables",
                 ref["kube-proxy"], "-V")
    assert ran.returncode == 0 and ran.stdout.startswith("iptables v"), ran.stderr

    corefile = tmp_path / "coredns"
    corefile.mkdir()
    (corefile / "Corefile").write_text(".:53 {\n    whoami\n}\n")
    started = docker("run", "-d", "--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
                     "--security-opt", "no-new-privileges", "--read-only", "-v", f"{corefile}:/etc/coredns:ro",
                     ref["coredns"], "-conf", "/etc/coredns/Corefile")
    assert started.returncode == 0, started.stderr
    coredns = started.stdout.strip()
    deadline = time.monotonic() + 30
    while ".:53" not in docker("logs", coredns).stdout and time.monotonic() < deadline:
        time.sleep(0.3)
    logs = docker("logs", coredns)
    assert ".:53" in logs.stdout and "CoreDNS-" in logs.stdout, logs.stdout + logs.stderr
    assert docker("inspect", "-f", "{{.State.Running}}", coredns).stdout.strip() == "true"
    assert "65532" in docker("top", coredns, "-o", "pid,uid,comm").stdout
    docker("rm", "-f", coredns)

    pause = docker("run", "-d", "--network", "none", ref["pause"]).stdout.strip()
    began = time.monotonic()
    assert docker("stop", "-t", "20", pause).returncode == 0
    assert time.monotonic() - began < 10, "pause ignored SIGTERM until docker stop's SIGKILL"
    assert docker("inspect", "-f", "{{.State.ExitCode}}", pause).stdout.strip() == "0"
