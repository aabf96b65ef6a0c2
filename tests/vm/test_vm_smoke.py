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
fqdn: smoke.k8sseed.test
runcmd:
  - [touch, /var/lib/smoke-ran]
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
                    collect_grace=5)
    print(f"accel={res.accel} wall={time.monotonic() - t0:.0f}s meta={json.dumps(res.meta)}")
    assert res.complete, res.summary()
    assert not res.timed_out, res.summary()
    assert res.returncode == 0, res.summary()     # the guest powered itself off

    status = res.cloud_init_status()
    assert status.get("status") == "done", (status, res.summary())
    assert not status.get("errors"), status
    # the NoCloud datasource, reading the ISO (not the None fallback)
    result = res.json("result.json")
    assert result["v1"]["datasource"].startswith("DataSourceNoCloud"), result
    assert result["v1"]["errors"] == []
    assert "/dev/sr0" in result["v1"]["datasource"] or "iso9660" in (res.text("cloud-init.log") or ""), result
    assert res.text("hostname.txt").strip() == "smoke"
    # the static address, on the NIC matched by MAC
    assert ADDRESS in res.addresses(MAC), res.interfaces()
    itf = res.interface_by_mac(MAC)
    assert itf["ifname"] == "nic0", itf
    # runcmd ran
    assert "/var/lib/smoke-ran" in (res.text("cloud-init.log") or "")
    assert res.meta["reason"] == "bootstrap-absent", res.meta   # no k8sseed unit in this seed
    assert res.text("docker-active.txt").strip() == "active", res.text("docker-active.txt")
    # the image's stand-ins answer version queries like the real tools
    assert "/swapfile" in res.text("swapon.txt")
