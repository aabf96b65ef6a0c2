"""Real Kubernetes from a seed, in a VM: `make e2e-real` (marker vm_real; outside CI's 90 minutes).

The VM image has no stand-ins (K8SSEED_VM_FLAVOUR=real): kubeadm, kubelet, kubectl, cri-tools and kubernetes-cni
come as .debs from a signed apt repository, cri-dockerd as a sha256-checked tarball, and the control plane's images
from a registry with TLS from the test's own CA, all built here from their Go modules (make real-k8s) and served
the way a site's mirror serves them: the seed reaches them through the profile's mirrors settings, key pinning
and registry CA included. Docker is Debian 12's own docker.io 20.10. Nothing is baked into the image.

The VM's NIC is QEMU user networking with restrict=on; 10.20.0.2:8080 (the package and file mirror) and
10.20.0.2:5000 (the registry) are forwarded to the test's own servers on the host's loopback.

The first proof, one control plane (keepalived + HAProxy endpoint): real `kubeadm init` from the seed, the node
registered at the release, the control-plane pods running from the mirrored images, kube-proxy in IPVS mode with
the kubernetes Service's backend, the leader-election leases held, the window token's end pinned. Calico's images
cannot be built here (its Go module is not served), so the node stays NotReady and Calico's Installation is applied
against a CRD that keeps unknown fields.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import qemu
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "realk8s"))

from apt_repo import build_repository, make_signing_key, mirror_settings  # noqa: E402
from images import Inputs, build_images, push_images  # noqa: E402
from realk8s_support import CACHE, KUBERNETES_RELEASES, folder_of, real_bin  # noqa: E402
from registry import make_test_ca, start_registry, stop_registry  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.vm_real]

K8SSEED = str(Path(sys.executable).parent / "k8sseed")
RELEASE = KUBERNETES_RELEASES[0] if KUBERNETES_RELEASES else "none"
SITE = "10.20.0.2"
MIRROR = f"http://{SITE}:8080"
REGISTRY = f"{SITE}:5000"
PHASES = ["prepare-os", "runtime", "kubernetes-packages", "load-balancer", "kubeadm", "addons"]

# One HTTP request per connection, from a directory (QEMU's guestfwd starts it for each connection).
SERVE_ONE = '''import os, sys, pathlib
root = pathlib.Path(sys.argv[1]).resolve()
request = sys.stdin.buffer.readline().decode("latin-1").split()
while sys.stdin.buffer.readline() not in (b"\\r\\n", b"\\n", b""):
    pass
path = (root / request[1].split("?")[0].lstrip("/")).resolve() if len(request) > 1 else root / "-"
if path.is_file() and root in path.parents:
    size, status = path.stat().st_size, "200 OK"
else:
    size, status, path = 10, "404 Not Found", None
sys.stdout.buffer.write(f"HTTP/1.0 {status}\\r\\nContent-Length: {size}\\r\\n\\r\\n".encode())
if path is None:
    sys.stdout.buffer.write(b"not found\\n")
else:
    with path.open("rb") as body:
        while chunk := body.read(1 << 20):
            sys.stdout.buffer.write(chunk)
sys.stdout.buffer.flush()
'''
# A byte relay from the guest's connection (stdin/stdout) to the host registry on loopback: TLS stays end to end.
RELAY = '''import os, socket, sys, threading
upstream = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while data := os.read(0, 65536):
        upstream.sendall(data)
    upstream.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := upstream.recv(65536):
    os.write(1, data)
'''
# What the Tigera operator manifest must hold for the bootstrap: the Installation CRD (it waits for it, then applies
# the seed's Installation). The operator itself cannot run here: no image of it can be built.
OPERATOR_MANIFEST = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "installations.operator.tigera.io"},
    "spec": {"group": "operator.tigera.io", "scope": "Cluster",
             "names": {"kind": "Installation", "listKind": "InstallationList", "plural": "installations",
                       "singular": "installation"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def _say(text: str) -> None:
    print(f"[e2e-real {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _cri_dockerd_tarball(mirror: Path, version: str) -> str:
    """The release tarball's layout (cri-dockerd/cri-dockerd) from the binary make real-k8s built; its sha256."""
    binary = real_bin(f"cri-dockerd-{version}", "cri-dockerd")
    target = mirror / "cri-dockerd" / f"v{version}" / f"cri-dockerd-{version}.amd64.tgz"
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tar.gettarinfo(str(binary), arcname="cri-dockerd/cri-dockerd")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with binary.open("rb") as data:
            tar.addfile(info, data)
    target.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    """The site's mirror and registry, filled from make real-k8s, and the seeds built against them."""
    if os.environ.get("K8SSEED_VM_FLAVOUR") != "real":
        pytest.fail("run through `make e2e-real`: the VM image must be the real flavour (K8SSEED_VM_FLAVOUR=real)")
    work = tmp_path_factory.mktemp("vm-real")
    mirror = work / "mirror"
    kubernetes_bin = real_bin(f"kubernetes-{RELEASE}", "kubeadm").parent
    cri_tools = real_bin(folder_of("cri-tools-"), "crictl").parent
    cni = real_bin(folder_of("cni-plugins-"), "bridge").parent
    started = time.monotonic()

    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    fingerprint = make_signing_key(gnupg)
    build_repository(RELEASE, [kubernetes_bin, cri_tools, cni], mirror / "pkgs", gnupg, fingerprint)
    _say(f"apt repository of {RELEASE} built and signed ({time.monotonic() - started:.0f} s)")

    cri_dockerd = next(iter(sorted(d.name.removeprefix("cri-dockerd-") for d in CACHE.glob("cri-dockerd-0.4.[3-9]"))))
    cri_sum = _cri_dockerd_tarball(mirror, cri_dockerd)

    tls = make_test_ca(work / "tls", sans=[SITE, "127.0.0.1"])
    registry = start_registry(work / "registry-storage", tls, listen="127.0.0.1")
    try:
        inputs = Inputs(kubernetes_bin, real_bin(folder_of("etcd-"), "etcd").parent,
                        real_bin(folder_of("coredns-"), "coredns").parent, work / "image-work",
                        CACHE / "debs")
        built = build_images(inputs, work / "images", log=_say)
        push_images(built, kubernetes_bin / "kubeadm", f"{registry.address}/k8s", tls.ca_cert, work / "push",
                    log=_say)
        _say(f"images built and pushed ({time.monotonic() - started:.0f} s)")

        profile = yaml.safe_load((REPO / "profiles" / "keepalived-haproxy.yaml").read_text())
        profile["cluster"]["kubernetesVersion"] = RELEASE
        profile.pop("bgp")  # Calico's BGP resources need calicoctl, which cannot be built here
        profile["acknowledge"] = ["ipvs-deprecated"]
        profile["calico"] = {"encapsulation": "VXLAN"}
        profile["purelb"] = {"enabled": False}
        profile["runtime"] = {"docker": {"source": "distro"},
                              "criDockerd": {"version": cri_dockerd, "sha256": {"amd64": cri_sum}}}
        calico = "3.32.1"
        profile["calico"]["version"] = calico
        profile["mirrors"] = {
            **mirror_settings(f"{MIRROR}/pkgs", fingerprint),
            "imageRepository": f"{REGISTRY}/k8s",
            "registryCA": tls.ca_cert.read_text(),
            "criDockerd": f"{MIRROR}/cri-dockerd/v{{version}}/cri-dockerd-{{version}}.{{arch}}.tgz",
            "calicoOperator": f"{MIRROR}/calico/v{{version}}/tigera-operator.yaml",
        }
        operator = mirror / "calico" / f"v{calico}" / "tigera-operator.yaml"
        operator.parent.mkdir(parents=True, exist_ok=True)
        operator.write_text(yaml.safe_dump(OPERATOR_MANIFEST, sort_keys=False))
        (work / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
        secret = work / "profile.secret"
        secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        secret.chmod(0o600)
        built_seeds = subprocess.run([K8SSEED, "build", str(work / "profile.yaml"), "-o", str(work / "out"),
                                      "--secret", str(secret)], capture_output=True, text=True)
        assert built_seeds.returncode == 0, built_seeds.stderr
        assert not built_seeds.stderr.strip(), f"the build said something: {built_seeds.stderr}"

        serve_one, relay = work / "serve_one.py", work / "relay.py"
        serve_one.write_text(SERVE_ONE)
        relay.write_text(RELAY)
        host, port = registry.address.rsplit(":", 1)
        netdev = (f"user,net=10.20.0.0/24,host=10.20.0.1,dns=10.20.0.3,"
                  f"guestfwd=tcp:{SITE}:8080-cmd:{sys.executable} {serve_one} {mirror},"
                  f"guestfwd=tcp:{REGISTRY}-cmd:{sys.executable} {relay} {host} {port}")
        nodes = {n["name"]: n for n in profile["nodes"]}
        yield {"work": work, "out": work / "out", "netdev": netdev, "nodes": nodes, "profile": profile,
               "fingerprint": fingerprint, "cri_dockerd": cri_dockerd}
    finally:
        stop_registry(registry.process.pid)


def _phase_times(log: str) -> list[tuple[str, str, str]]:
    return re.findall(r"^(\S+) k8sseed\[([a-z-]+)\]: (begin|done|already done)$", log, re.M)


def test_one_control_plane_comes_up_with_real_kubernetes_from_its_seed(site):
    node = site["nodes"]["cp-1"]
    start = time.monotonic()
    _say(f"power-on cp-1 (Kubernetes {RELEASE}, cri-dockerd {site['cri_dockerd']}, Docker from Debian)")
    res = qemu.boot(qemu.ensure_image(), site["out"] / "cp-1.iso", node["mac"], workdir=site["work"] / "cp-1",
                    name="cp-1", netdev=site["netdev"], memory_mb=4096, smp=2, timeout=2100,
                    collect_extra=["/etc/kubernetes/manifests", "/var/log/apt/term.log"])
    _say(f"cp-1 collected after {time.monotonic() - start:.0f} s: {res.meta.get('reason')}")
    log = res.text("k8sseed-bootstrap.log", "") or ""
    for stamp, phase, what in _phase_times(log):
        _say(f"  {stamp} {phase} {what}")
    assert res.complete, res.summary()
    assert res.meta["reason"] == "bootstrap-finished", (res.meta, log[-5000:], res.text("journal-kubelet.txt", ""))
    assert not res.failed_units(), res.failed_units_report()
    assert [p for _, p, w in _phase_times(log) if w == "done"] == PHASES, log[-3000:]

    packages = res.text("dpkg.txt")
    for package in ("kubeadm", "kubelet", "kubectl"):
        assert re.search(rf"^[hi]i\s+{package}\s+{re.escape(RELEASE)}-1\.1\s", packages, re.M), package
    assert re.search(r"^[hi]i\s+cri-tools\s", packages, re.M), "cri-tools installed by name"
    assert re.search(r"^[hi]i\s+docker\.io\s+20\.10", packages, re.M), "Debian's own Docker"

    nodes = res.json("k8s-nodes.json")
    assert [n["metadata"]["name"] for n in nodes["items"]] == ["cp-1"], nodes
    info = nodes["items"][0]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == f"v{RELEASE}", info
    assert info["containerRuntimeVersion"].startswith("docker://20.10"), info

    pods = res.text("k8s-pods.txt")
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert re.search(rf"^kube-system\s+{component}-cp-1\s+1/1\s+Running\s", pods, re.M), pods
    assert re.search(r"^kube-system\s+kube-proxy-\S+\s+1/1\s+Running\s", pods, re.M), pods
    images = res.text("docker-images.txt")
    assert f"{REGISTRY}/k8s/kube-apiserver" in images and f"{REGISTRY}/k8s/pause" in images, images

    leases = {item["metadata"]["name"]: item["spec"].get("holderIdentity", "")
              for item in res.json("k8s-leases.json")["items"]}
    for lease in ("kube-controller-manager", "kube-scheduler"):
        assert leases.get(lease, "").startswith("cp-1"), leases

    ipvs = res.text("ipvsadm.txt")
    assert re.search(r"TCP\s+10\.96\.0\.1:443 rr.*\n\s+->\s+10\.20\.0\.11:6443", ipvs), ipvs

    expected_end = re.search(r"^K8SSEED_INIT_TOKEN_EXPIRES=(\S+)$", res.text("etc-k8sseed/node.env", ""), re.M)
    tokens = res.json("k8s-bootstrap-tokens.json")["items"]
    ends = [base64.b64decode(t["data"]["expiration"]).decode() for t in tokens]
    assert expected_end and expected_end.group(1) in ends, (ends, expected_end)
    _say(f"passed: cp-1 registered at v{RELEASE}, control plane running, {time.monotonic() - start:.0f} s in all")
    print(json.dumps({"phases": _phase_times(log)}, indent=1))
