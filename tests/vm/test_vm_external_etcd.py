"""External etcd in VMs: the three etcd nodes of profiles/external-etcd.yaml boot from their seed ISOs and form
the cluster by themselves, with nothing but the seeds.

The VMs' NICs are taps on a bridge inside a network namespace this test creates (10.50.0.1/24 on the bridge,
the profile's gateway); the test asks the cluster from there with etcdctl and a control plane's
apiserver-etcd-client certificate from cp-1's seed. The image carries Debian's etcd-server (its own etcd.service
masked), so the profile pins that version and the bootstrap uses the installed binary (no download); the
profile's Kubernetes becomes the newest whose kubeadm takes that etcd (Debian 12's 3.4.23: 1.30) if its own does
not, as k8sseed refuses the pair otherwise (no kubeadm runs here).

Steps: power on etcd-1..3 at once and time power-on -> `etcdctl endpoint health --cluster` healthy with 3
members over TLS; kill etcd-3's VM (quorum kept: a write and a read through the other two); boot it again on
the same disk (restarts with its data, same member ID); kill it, boot a fresh disk with the same seed (it
removes its old member and adds itself again): 3 healthy members, 3 names, no duplicate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import qemu
import yaml

from k8sseed.versions import kubeadm_etcd_problem, newest_minor_taking_etcd

pytestmark = [pytest.mark.vm, pytest.mark.vm_etcd]

REPO = Path(__file__).resolve().parents[2]
K8SSEED = Path(sys.executable).parent / "k8sseed"
BRIDGE_IP = "10.50.0.1"
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
FORM_TIMEOUT = 1200   # s, three guests booting at once under TCG on 2 cores
RETURN_TIMEOUT = 900  # s, one guest booting beside two running ones
SMP = 1


def _sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def _image_etcd_version(image: qemu.Image) -> str:
    """The version of the image's etcd-server package, read from its dpkg status (no boot needed)."""
    out = subprocess.run(["debugfs", "-R", "cat /var/lib/dpkg/status", str(image.rootfs)], capture_output=True,
                         text=True)
    block = next((b for b in out.stdout.split("\n\n") if b.startswith("Package: etcd-server\n")), "")
    version = next((line.split(": ", 1)[1] for line in block.splitlines() if line.startswith("Version: ")), "")
    assert version, "etcd-server is not in the VM image (tests/vm/build_image.sh installs it)"
    return version.split("-", 1)[0].split(":")[-1]


class Segment:
    """The namespace with the bridge and the VMs' taps. Only what it created is removed."""

    def __init__(self) -> None:
        self.ns = f"k8sseed-vme-{os.getpid()}"
        self.created = False

    def ip(self, *args: str) -> str:
        return _sh("ip", "-n", self.ns, *args)

    def up(self) -> None:
        _sh("ip", "netns", "add", self.ns)
        self.created = True
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", "br0", "type", "bridge")
        self.ip("addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
        self.ip("link", "set", "br0", "up")

    def tap(self, name: str) -> str:
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.ip("link", "set", name, "master", "br0")
        self.ip("link", "set", name, "up")
        return name

    def close(self) -> None:
        if self.created:
            subprocess.run(["ip", "netns", "del", self.ns], check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, vm_image) -> dict:
    for tool in ("ip", "etcdctl", "debugfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"the external-etcd VM test needs {tool}")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("the external-etcd VM test needs /dev/net/tun for the VMs' taps")
    work = tmp_path_factory.mktemp("vm-etcd")
    profile = yaml.safe_load((REPO / "profiles" / "external-etcd.yaml").read_text())
    profile["etcd"] = {"version": _image_etcd_version(qemu._as_image(vm_image))}
    if kubeadm_etcd_problem(profile["cluster"]["kubernetesVersion"], profile["etcd"]["version"]):
        profile["cluster"]["kubernetesVersion"] = newest_minor_taking_etcd(profile["etcd"]["version"]).newest
    profile["acknowledge"] = ["token-never-expires", "etcd-unverified"]
    profile["cluster"]["joinTimeoutSeconds"] = 1800
    path = work / "external-etcd.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    secret = work / "cluster.secret"
    secret.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    secret.chmod(0o600)
    out = work / "out"
    result = subprocess.run([str(K8SSEED), "build", str(path), "-o", str(out), "--secret", str(secret)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    nodes = {n["name"]: n for n in json.loads((out / "manifest.json").read_text())["nodes"]}
    cp = {f["path"]: f["content"] for f in yaml.safe_load((out / "cp-1" / "user-data").read_text())["write_files"]}
    tls = work / "tls"
    tls.mkdir()
    for name, key in (("ca.crt", "/etc/k8sseed/pki/etcd/ca.crt"),
                      ("client.crt", "/etc/k8sseed/pki/apiserver-etcd-client.crt"),
                      ("client.key", "/etc/k8sseed/pki/apiserver-etcd-client.key")):
        (tls / name).write_text(cp[key])
    return {"work": work, "out": out, "nodes": nodes, "tls": tls, "image": vm_image,
            "version": profile["etcd"]["version"]}


def test_three_etcd_vms_form_a_cluster_that_keeps_quorum_and_takes_a_member_back(built):
    work, out, nodes, tls = built["work"], built["out"], built["nodes"], built["tls"]
    seg = Segment()
    vms: dict[str, qemu.VM] = {}
    ips = {n: nodes[n]["ip"].split("/")[0] for n in MEMBERS}

    def etcdctl(*args: str, endpoints: tuple[str, ...] = MEMBERS) -> subprocess.CompletedProcess:
        urls = ",".join(f"https://{ips[n]}:2379" for n in endpoints)
        return subprocess.run(["ip", "netns", "exec", seg.ns, "etcdctl", f"--endpoints={urls}",
                               f"--cacert={tls / 'ca.crt'}", f"--cert={tls / 'client.crt'}",
                               f"--key={tls / 'client.key'}", "--dial-timeout=3s", "--command-timeout=5s", *args],
                              capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60)

    def healthy(count: int, via: tuple[str, ...]) -> list[dict] | None:
        health = etcdctl("endpoint", "health", "--cluster", "-w", "json", endpoints=via)
        if health.returncode != 0:
            return None
        rows = json.loads(health.stdout)
        if len(rows) != count or not all(r["health"] for r in rows):
            return None
        return json.loads(etcdctl("member", "list", "-w", "json", endpoints=via).stdout)["members"]

    def wait_healthy(count: int, via: tuple[str, ...], limit: float, what: str) -> list[dict]:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            members = healthy(count, via)
            if members is not None:
                return members
            for key, vm in vms.items():
                assert vm.running() or key.endswith("-old"), f"{key} stopped\n" + vm.console_text()[-4000:]
            time.sleep(5)
        consoles = "\n".join(f"--- {k}\n{v.console_text()[-3000:]}" for k, v in vms.items())
        raise AssertionError(f"{what}: no {count} healthy members within {limit:.0f}s\n{consoles}")

    def boot(key: str, node: str) -> qemu.VM:
        vm = qemu.VM(built["image"], out / f"{node}.iso", nodes[node]["mac"], workdir=work / key, name=key,
                     netns=seg.ns, netdev=f"tap,ifname=t-{node},script=no,downscript=no", collect=False, smp=SMP)
        vms[key] = vm
        return vm.start()

    try:
        seg.up()
        for node in MEMBERS:
            seg.tap(f"t-{node}")
        t0 = time.monotonic()
        for node in MEMBERS:
            boot(node, node)
        members = wait_healthy(3, MEMBERS, FORM_TIMEOUT, "first formation")
        formed = time.monotonic() - t0
        print(f"\netcd {built['version']}: power-on -> 3 healthy members over TLS in {formed:.0f}s "
              f"({vms['etcd-1'].accel}, 3 guests on {os.cpu_count()} host cores)")
        assert sorted(m["name"] for m in members) == list(MEMBERS)
        assert all(u.startswith("https://") for m in members for u in m["clientURLs"] + m["peerURLs"])
        ids = {m["name"]: m["ID"] for m in members}

        vms["etcd-3"].kill()
        put = etcdctl("put", "k8sseed/vm", "quorum-kept", endpoints=("etcd-1", "etcd-2"))
        assert put.returncode == 0, put.stderr
        assert "quorum-kept" in etcdctl("get", "k8sseed/vm", endpoints=("etcd-2",)).stdout
        print("etcd-3 powered off: a write through etcd-1/etcd-2 succeeded (quorum kept)")

        t1 = time.monotonic()
        vms["etcd-3"].start()
        members = wait_healthy(3, ("etcd-1", "etcd-2"), RETURN_TIMEOUT, "same disk")
        print(f"etcd-3 on the same disk: 3 healthy members {time.monotonic() - t1:.0f}s after power-on")
        assert {m["name"]: m["ID"] for m in members} == ids, "the rebooted member must keep its member ID"

        vms["etcd-3"].kill()
        vms["etcd-3-old"] = vms.pop("etcd-3")
        t2 = time.monotonic()
        boot("etcd-3-fresh", "etcd-3")
        members = wait_healthy(3, ("etcd-1", "etcd-2"), RETURN_TIMEOUT, "fresh disk")
        print(f"etcd-3 on a fresh disk with the same seed: 3 healthy members {time.monotonic() - t2:.0f}s "
              "after power-on")
        names = sorted(m["name"] for m in members)
        assert names == list(MEMBERS), names
        assert {m["name"]: m["ID"] for m in members}["etcd-3"] != ids["etcd-3"]
        get = etcdctl("get", "k8sseed/vm", endpoints=("etcd-3",))
        assert "quorum-kept" in get.stdout, get.stderr
    finally:
        for vm in vms.values():
            vm.kill()
        seg.close()
