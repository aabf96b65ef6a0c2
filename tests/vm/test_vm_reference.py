"""Boot the seeds of the reference cluster in real VMs: what a user's machine does after attaching the ISO.

The profile is profiles/reference.yaml with one change a user behind a firewall would make too: the
`mirrors` section points at a local mirror (QEMU forwards 10.20.0.2:8080 inside the VM to a helper that
serves two manifests from the test's directory). The VM's NIC is QEMU user networking with restrict=on on
the profile's own subnet (gateway 10.20.0.1 is QEMU): nothing leaves the VM. kubeadm, kubelet, kubectl and
cri-dockerd are the image's stand-ins (tests/vm/guest); everything else is real: cloud-init, systemd,
Docker, BIRD, the modules and sysctls.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import qemu
import yaml
from mirrored_seeds import build_behind_mirror

pytestmark = pytest.mark.vm

PHASES = ["prepare-os", "runtime", "kubernetes-packages", "load-balancer", "kubeadm", "addons"]

SERVE_ONE = '''import sys, pathlib
root = pathlib.Path(sys.argv[1])
request = sys.stdin.buffer.readline().decode("latin-1").split()
while sys.stdin.buffer.readline() not in (b"\\r\\n", b"\\n", b""):
    pass
path = root / request[1].lstrip("/") if len(request) > 1 else root / "-"
if path.is_file() and root in path.resolve().parents:
    body, status = path.read_bytes(), "200 OK"
else:
    body, status = b"not found\\n", "404 Not Found"
sys.stdout.buffer.write(f"HTTP/1.0 {status}\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n".encode() + body)
sys.stdout.buffer.flush()
'''


# A site that reaches quay.io and Docker Hub only through mirrors: the init node points the fetched operator
# manifest's images at the mirror, and Docker pulls Hub images through it.
IMAGE_MIRRORS = {"imageRegistries": {"quay.io": "10.20.0.2:8080/quay.io"}, "dockerHubMirrors": ["http://10.20.0.2:8080"]}
OPERATOR_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: tigera-operator, namespace: tigera-operator}
spec:
  template:
    spec:
      containers:
      - {name: tigera-operator, image: "quay.io/tigera/operator:v1.29.0"}
      - {name: other, image: "registry.k8s.io/pause:3.8"}
"""


def _build_behind_mirror(work: Path, profile_name: str, **kw) -> dict:
    """A profile from profiles/ with its mirrors pointing at the test's local mirror, built with a fresh secret."""
    profile, out, mirror = build_behind_mirror(work, profile_name, **kw)
    server = work / "serve_one.py"
    server.write_text(SERVE_ONE)
    netdev = (f"user,net=10.20.0.0/24,host=10.20.0.1,dns=10.20.0.3,"
              f"guestfwd=tcp:10.20.0.2:8080-cmd:{sys.executable} {server} {mirror}")
    nodes = {n["name"]: n for n in profile["nodes"]}
    return {"work": work, "out": out, "netdev": netdev, "nodes": nodes}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference profile (BGP mode) behind a local mirror."""
    return _build_behind_mirror(tmp_path_factory.mktemp("vm-reference"), "reference.yaml", mirrors=IMAGE_MIRRORS,
                                served={"calico/v3.25.2/tigera-operator.yaml": OPERATOR_MANIFEST})


def _files(out: Path, node: str) -> dict[str, str]:
    data = yaml.safe_load((out / node / "user-data").read_text())
    return {f["path"]: f["content"] for f in data["write_files"]}


def _boot(cluster: dict, node: str, name: str, **kw) -> qemu.VMResult:
    mac = cluster["nodes"][node]["mac"]
    return qemu.boot(qemu.ensure_image(), cluster["out"] / f"{node}.iso", mac, workdir=cluster["work"] / name,
                     name=name, netdev=cluster["netdev"], collect_extra=["/etc/fstab"], **kw)


def _log(res: qemu.VMResult) -> str:
    return res.text("k8sseed-bootstrap.log", "") or ""


def _assert_no_unit_failed(res: qemu.VMResult) -> None:
    assert not res.failed_units(), res.failed_units_report()


def _assert_seed_accepted_and_os_prepared(res: qemu.VMResult, node: dict) -> None:
    assert res.complete, res.summary()
    _assert_no_unit_failed(res)
    status = res.cloud_init_status()
    assert status.get("status") == "done", (status, res.summary())
    assert not status.get("errors"), status
    assert not status.get("recoverable_errors"), status
    result = res.json("result.json")
    assert result["v1"]["errors"] == [], result
    assert result["v1"]["datasource"].startswith("DataSourceNoCloud"), result
    assert "seed=/dev/sr0" in res.text("datasource.txt"), "the NoCloud data came from our ISO"
    assert res.text("hostname.txt").strip() == node["name"]
    assert node["ip"] in res.addresses(node["mac"]), res.interfaces()
    modules = res.text("lsmod.txt")
    for module in ("br_netfilter", "overlay", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"):
        assert re.search(rf"^{module}\s", modules, re.M), f"{module} not loaded"
        assert module in res.text("modules-load.txt"), f"{module} not configured to load at boot"
    sysctl = res.text("sysctl.txt")
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        assert re.search(rf"^{re.escape(key)} = 1$", sysctl, re.M), key
    assert "/swapfile" not in res.text("swapon.txt"), "swap is still on"
    fstab = (res.extra("/etc/fstab") or Path("/nonexistent")).read_text()
    assert re.search(r"^# disabled by k8sseed: /swapfile", fstab, re.M), fstab
    assert res.text("docker-active.txt").strip() == "active"
    assert res.json("docker-info.json")["CgroupDriver"] == "systemd"


def _phase_lines(log: str) -> list[tuple[str, str]]:
    return re.findall(r"k8sseed\[([a-z-]+)\]: (begin|done|already done)$", log, re.M)


def _assert_addons_applied_in_order(res: qemu.VMResult, seed: dict[str, str]) -> None:
    """Operator, then calicoctl writes the v3 BGP resources, then the Installation, then pools and PureLB."""
    steps = []
    for call in res.standin_calls():
        if call["tool"] in ("kubectl", "calicoctl") and "apply" in call["argv"]:
            steps.append((call["tool"], next(a for a in reversed(call["argv"]) if a.startswith("/")), call))
    order = [(tool, path.rsplit("/", 1)[1]) for tool, path, _ in steps]
    expected = [("kubectl", "tigera-operator.yaml"), ("calicoctl", "calico-bgp.yaml"),
                ("kubectl", "calico-installation.yaml"), ("calicoctl", "calico-ippools.yaml"),
                ("kubectl", "purelb-crds.yaml"), ("kubectl", "purelb.yaml"), ("kubectl", "purelb.yaml"),
                ("kubectl", "ready.yaml")]
    assert order == expected, order
    bgp_call = steps[1][2]
    assert bgp_call["argv"] == ["apply", "--config", "/etc/k8sseed/addons/calicoctl.cfg", "-f",
                                "/etc/k8sseed/addons/calico-bgp.yaml"], bgp_call["argv"]
    assert bgp_call["files"]["/etc/k8sseed/addons/calicoctl.cfg"] == \
        seed["/etc/k8sseed/addons/calicoctl.cfg"].rstrip("\n")
    bgp = [d for d in yaml.safe_load_all(bgp_call["files"]["/etc/k8sseed/addons/calico-bgp.yaml"]) if d]
    assert [(d["apiVersion"], d["kind"]) for d in bgp] == [("projectcalico.org/v3", "BGPConfiguration"),
                                                           ("projectcalico.org/v3", "BGPPeer")]
    assert bgp[0]["spec"]["listenPort"] == 1790, "calico-node's BIRD must leave TCP 179 to the host BIRD"
    pools = [d for d in yaml.safe_load_all(steps[3][2]["files"]["/etc/k8sseed/addons/calico-ippools.yaml"]) if d]
    assert [(d["apiVersion"], d["kind"], d["spec"]["disabled"]) for d in pools] == [
        ("projectcalico.org/v3", "IPPool", True)]
    log = _log(res)
    assert "calicoctl v3.25.2 already present at /usr/local/bin/calicoctl" in log, "pinned calicoctl not reused"
    assert "Calico resources are stored as crd.projectcalico.org" in log
    # The operator manifest was applied with its quay.io image pointed at the mirror, other images untouched.
    operator = yaml.safe_load(next(iter(steps[0][2]["files"].values())))
    images = [c["image"] for c in operator["spec"]["template"]["spec"]["containers"]]
    assert images == ["10.20.0.2:8080/quay.io/tigera/operator:v1.29.0", "registry.k8s.io/pause:3.8"], images
    assert "image quay.io/tigera/operator:v1.29.0 -> 10.20.0.2:8080/quay.io/tigera/operator:v1.29.0" in log
    # The real dockerd took the Docker Hub mirror from daemon.json.
    mirrors = res.json("docker-info.json")["RegistryConfig"]["Mirrors"]
    assert [m.rstrip("/") for m in mirrors] == ["http://10.20.0.2:8080"], mirrors


def test_first_control_plane_node_boots_prepares_itself_and_runs_kubeadm_init(cluster):
    res = _boot(cluster, "cp-1", "cp-1", timeout=900)
    node = cluster["nodes"]["cp-1"]
    _assert_seed_accepted_and_os_prepared(res, node)
    log = _log(res)
    assert res.meta["reason"] == "bootstrap-finished", (res.meta, log[-3000:])
    assert _phase_lines(log) == [(p, s) for p in PHASES for s in ("begin", "done")], log
    assert "bootstrap complete" in log
    assert all(re.match(r"^\S+ k8sseed\[[a-z-]+\]: ", line) for line in log.splitlines()), "untagged log line"
    # Golden-image rule: tools already at the pinned versions are not downloaded again.
    assert "kubeadm v1.25.6 already installed" in log and "cri-dockerd 0.3.16 already present" in log
    inits = [c for c in res.standin_calls("kubeadm") if c["argv"][:1] == ["init"]]
    assert len(inits) == 1, res.standin_calls("kubeadm")
    assert inits[0]["argv"] == ["init", "--config", "/etc/k8sseed/kubeadm-init.yaml"]
    assert inits[0]["files"]["/etc/k8sseed/kubeadm-init.yaml"] == _files(cluster["out"], "cp-1")[
        "/etc/k8sseed/kubeadm-init.yaml"].rstrip("\n")
    # The host BIRD runs k8sseed's config, installed by the load-balancer phase from the seed's root-only copy.
    assert re.search(r"^\s*bird\.service\s+loaded\s+active\s+running", res.text("systemctl-units.txt") or "", re.M), \
        res.text("systemctl-units.txt")
    assert "k8sseed host BIRD for cp-1" in (res.text("etc-bird/bird.conf") or ""), "BIRD runs the distro's config"
    _assert_addons_applied_in_order(res, _files(cluster["out"], "cp-1"))

    # Booting the same disk again redoes nothing and reports no error.
    started = time.monotonic()
    vm = res.vm
    vm.start()
    again = vm.wait(900)
    print(f"second boot: {time.monotonic() - started:.0f}s")
    assert again.complete, again.summary()
    assert again.cloud_init_status().get("status") == "done"
    assert not again.cloud_init_status().get("errors")
    assert again.meta["reason"] == "bootstrap-finished", again.meta
    second = again.text("journal-bootstrap.txt") or ""
    assert all(f"k8sseed[{p}]: already done" in second for p in PHASES), second[-3000:]
    _assert_no_unit_failed(again)
    assert len([c for c in again.standin_calls("kubeadm") if c["argv"][:1] == ["init"]]) == 1


KILL_POINTS = {"runtime": r"k8sseed\[runtime\]: begin", "kubeadm-init": r"k8sseed\[kubeadm\]: \+ kubeadm init"}


def test_a_bootstrap_killed_mid_phase_resumes_on_the_next_boot(cluster):
    """Both kill points at once, one VM each (-smp 1): two guests share the 2 cores at ~1.5x the time of one."""
    vms = {kill_at: qemu.VM(qemu.ensure_image(), cluster["out"] / "cp-1.iso", cluster["nodes"]["cp-1"]["mac"],
                            workdir=cluster["work"] / f"cp-1-kill-{kill_at}", name="cp-1-kill",
                            netdev=cluster["netdev"], smp=1)
           for kill_at in KILL_POINTS}
    results: dict[str, qemu.VMResult] = {}
    try:
        for vm in vms.values():
            vm.start()
        pending, deadline = dict(vms), time.monotonic() + 900
        while pending:   # watch both consoles: pull each plug the moment its phase shows
            for kill_at, vm in list(pending.items()):
                if re.search(KILL_POINTS[kill_at], vm.console_text(), re.M):
                    vm.kill()
                    vm.start()
                    del pending[kill_at]
                else:
                    assert vm.running() and time.monotonic() < deadline, \
                        f"never reached {kill_at}\n" + vm.console_text()[-3000:]
            time.sleep(0.2)
        for kill_at, vm in vms.items():
            results[kill_at] = vm.wait(1200)
    finally:
        for vm in vms.values():
            vm.kill()
    for kill_at, res in results.items():
        assert res.complete, (kill_at, res.summary())
        _assert_no_unit_failed(res)
        log = _log(res)
        assert res.meta["reason"] == "bootstrap-finished", (kill_at, res.meta, log[-3000:])
        assert "k8sseed[prepare-os]: already done" in log, (kill_at, "the finished phase was redone")
        assert "bootstrap complete" in log
        if kill_at == "runtime":
            # The kill came after runtime began (seen on the console); the next boot ran runtime to its end, once.
            assert log.count("k8sseed[runtime]: done") == 1, log
            assert log.index("k8sseed[prepare-os]: already done") < log.rindex("k8sseed[runtime]: begin"), log
        else:
            # A cut-off init is reset and run again, with the seed's CA back in place (kubeadm reset empties pki).
            reset = log.index("a previous kubeadm init did not finish: resetting first")
            placed = log.index("shared cluster CA and service-account keys placed", reset)
            assert placed < log.index("+ kubeadm init --config", placed) < log.index("kubeadm init completed"), log
            calls = [c["argv"][:1] for c in res.standin_calls("kubeadm")]
            assert calls.count(["reset"]) == 1 and calls[-1:] != [["reset"]], calls


def test_keepalived_haproxy_control_plane_holds_the_vip_and_inits_through_haproxy(tmp_path):
    vrrp = _build_behind_mirror(tmp_path, "keepalived-haproxy.yaml")
    res = _boot(vrrp, "cp-1", "vrrp-cp-1", timeout=900)
    node = vrrp["nodes"]["cp-1"]
    _assert_seed_accepted_and_os_prepared(res, node)
    log = _log(res)
    assert res.meta["reason"] == "bootstrap-finished", (res.meta, log[-3000:])
    assert res.interface_by_mac(node["mac"])["ifname"] == "uplink0", "interfaceName renames the NIC"
    assert "10.20.0.10/32" in res.addresses(node["mac"]), "keepalived holds the VIP (a /32) on the init node"
    assert not res.failed_units(), res.failed_units_report()  # keepalived and haproxy included
    assert "Keepalived holds VIP 10.20.0.10" in log
    init = next(c for c in res.standin_calls("kubeadm") if c["argv"][:1] == ["init"])
    assert "controlPlaneEndpoint: 10.20.0.10:8443" in init["files"]["/etc/k8sseed/kubeadm-init.yaml"]
