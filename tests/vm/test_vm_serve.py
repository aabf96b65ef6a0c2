"""A machine that gets its seed over HTTP from `k8sseed serve` instead of an ISO, and whose bootstrap phases
show up in `k8sseed status`: what a PXE-booted rack does, minus the firmware.

No seed ISO: the kernel command line carries what the server's iPXE script gives a machine
(`ds=nocloud-net;s=http://10.20.0.5:8080/by-mac/<mac>/` and its network-config). QEMU user networking with
restrict=on forwards 10.20.0.5:8080 inside the VM, one connection at a time, to the server on 127.0.0.1; the
mirror for the addons is at 10.20.0.2:8080 as in test_vm_reference. Nothing leaves the VM.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import qemu
from mirrored_seeds import K8SSEED, build_behind_mirror
from test_vm_reference import IMAGE_MIRRORS, OPERATOR_MANIFEST, PHASES, SERVE_ONE

pytestmark = pytest.mark.vm

SERVER = "http://10.20.0.5:8080/"
# One guest connection -> one TCP connection to the server on loopback (QEMU runs this per connection).
BRIDGE = '''import socket, sys, threading
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def upstream():
    while data := sys.stdin.buffer.read1(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := sock.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
'''


def test_a_node_seeded_over_http_reports_its_phases_to_the_server(tmp_path: Path):
    from k8sseed.serve.ipxe import seed_arguments

    profile, out, mirror = build_behind_mirror(tmp_path, "reference.yaml", mirrors=IMAGE_MIRRORS,
                                               served={"calico/v3.25.2/tigera-operator.yaml": OPERATOR_MANIFEST})
    node = next(n for n in profile["nodes"] if n["name"] == "cp-1")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([K8SSEED, "serve", str(out), "--profile", str(tmp_path / "profile.yaml"),
                                   "--listen", "127.0.0.1:0", "--url", SERVER], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (match := re.search(r"listening on http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        port = int(match.group(1))
        (tmp_path / "serve_one.py").write_text(SERVE_ONE)
        (tmp_path / "bridge.py").write_text(BRIDGE)
        netdev = (f"user,net=10.20.0.0/24,host=10.20.0.1,dns=10.20.0.3,"
                  f"guestfwd=tcp:10.20.0.2:8080-cmd:{sys.executable} {tmp_path / 'serve_one.py'} {mirror},"
                  f"guestfwd=tcp:10.20.0.5:8080-cmd:{sys.executable} {tmp_path / 'bridge.py'} {port}")
        network_config = (out / "cp-1" / "network-config").read_bytes()
        append = " ".join(seed_arguments(SERVER, node["mac"], network_config))
        started = time.monotonic()
        res = qemu.boot(qemu.ensure_image(), None, node["mac"], workdir=tmp_path / "vm", name="http-cp-1",
                        netdev=netdev, append=append, timeout=600)
        print(f"\nboot over HTTP: {time.monotonic() - started:.0f}s, {res.meta}")
        assert res.complete, res.summary()
        status = res.cloud_init_status()
        assert status.get("status") == "done" and not status.get("errors"), (status, res.summary())
        datasource = res.text("datasource.txt") or ""
        assert "DataSourceNoCloudNet" in datasource and f"{SERVER}by-mac/{node['mac']}/" in datasource, datasource
        assert res.text("hostname.txt").strip() == "cp-1"
        assert node["ip"] in res.addresses(node["mac"]), res.interfaces()
        assert res.meta["reason"] == "bootstrap-finished", res.summary()
        time.sleep(1.0)  # the server saves its board within half a second of the last report
        table = subprocess.run([K8SSEED, "status", str(out)], capture_output=True, text=True, check=True).stdout
        rows = {line.split()[0]: line for line in table.splitlines()}
        assert "bootstrap done" in rows["cp-1"], table
        assert "no report yet" in rows["cp-2"], table
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = log_path.read_text()
    for name in ("meta-data", "user-data", "vendor-data"):
        assert f"GET /by-mac/{node['mac']}/{name} 200" in served, served[-3000:]
    reported = re.findall(r"status cp-1: (\S+) (\S+)", served)
    for phase in PHASES:
        assert (phase, "started") in reported and (phase, "done") in reported, (phase, reported)
    assert ("bootstrap", "done") in reported
    refused = [line for line in served.splitlines() if "report refused" in line]
    assert all("out of order" in line for line in refused), refused  # a background report overtaken, nothing else
    state = json.loads((out.parent / "out.serve-state" / "status.json").read_text())
    assert [n["node"] for n in state["nodes"]] == ["cp-1"]
