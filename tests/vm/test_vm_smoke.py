"""Smoke test of the VM harness itself: a hand-made NoCloud seed ISO, no k8sseed code involved."""
import json
import time

import pytest
import qemu

pytestmark = pytest.mark.vm

MAC = "52:54:00:5e:ed:01"
ADDRESS = "10.0.2.15/24"   # inside QEMU's user-network subnet; restrict=on: nothing leaves the VM

USER_DATA = """#cloud-config
hostname: smoke
runcmd:
  - touch /var/lib/smoke-ran
  - mkdir -p /var/lib/smoke
  - kubeadm version -o short > /var/lib/smoke/kubeadm
  - kubelet --version > /var/lib/smoke/kubelet
  - kubectl version --client -o json > /var/lib/smoke/kubectl.json
  - cri-dockerd --version 2> /var/lib/smoke/cri-dockerd >/dev/null
"""
META_DATA = "instance-id: smoke-1\nlocal-hostname: smoke\n"
NETWORK_CONFIG = f"""version: 2
ethernets:
  nic0:
    match:
      macaddress: "{MAC}"
    set-name: nic0
    addresses: [{ADDRESS}]
    routes:
      - to: 0.0.0.0/0
        via: 10.0.2.2
"""


def test_smoke_nocloud_iso(vm_image, vm_accel, tmp_path):
    iso = qemu.make_seed_iso(tmp_path / "smoke.iso", USER_DATA, META_DATA, NETWORK_CONFIG)
    t0 = time.monotonic()
    res = qemu.boot(vm_image, iso, MAC, workdir=tmp_path / "vm", name="smoke", timeout=600,
                    collect_grace=5, collect_extra=["/var/lib/smoke-ran", "/var/lib/smoke"])
    print(f"\naccel={res.accel} wall={time.monotonic() - t0:.0f}s meta={json.dumps(res.meta)}")
    assert res.complete, res.summary()
    assert not res.timed_out, res.summary()
    assert res.returncode == 0, res.summary()     # the guest powered itself off

    # cloud-init finished without errors, from the NoCloud datasource on the ISO (not "None")
    status = res.cloud_init_status()
    assert status.get("status") == "done", (status, res.summary())
    assert not status.get("errors"), status
    result = res.json("result.json")
    assert result["v1"]["errors"] == [], result
    assert result["v1"]["datasource"].startswith("DataSourceNoCloud"), result
    assert "seed=/dev/sr0" in res.text("datasource.txt"), res.text("datasource.txt")

    # hostname, and the static address on the NIC matched by MAC (renamed by set-name)
    assert res.text("hostname.txt").strip() == "smoke"
    assert ADDRESS in res.addresses(MAC), res.interfaces()
    assert res.interface_by_mac(MAC)["ifname"] == "nic0", res.interface_by_mac(MAC)

    # runcmd ran; the image's stand-ins answer version queries like the real tools
    assert res.extra("/var/lib/smoke-ran") is not None, res.commands
    smoke = res.extra("/var/lib/smoke")
    assert (smoke / "kubeadm").read_text() == "v1.25.6\n"
    assert (smoke / "kubelet").read_text() == "Kubernetes v1.25.6\n"
    assert json.loads((smoke / "kubectl.json").read_text())["clientVersion"]["gitVersion"] == "v1.25.6"
    assert (smoke / "cri-dockerd").read_text().startswith("cri-dockerd 0.3.16 ")
    tools = [c["tool"] for c in res.standin_calls()]
    assert tools == ["kubeadm", "kubelet", "kubectl", "cri-dockerd"], tools

    # the rest of the collector's contract
    assert res.meta["reason"] == "bootstrap-absent", res.meta   # no k8sseed unit in this seed
    assert res.text("docker-active.txt").strip() == "active", res.text("docker-active.txt")
    assert "/swapfile" in res.text("swapon.txt"), res.text("swapon.txt")
    assert "net.ipv4.ip_forward" in res.text("sysctl.txt")
    assert "Module" in res.text("lsmod.txt")
    assert res.console().count("K8SSEED-COLLECT: done") == 1
    assert not res.failed_units(), res.failed_units_report()
