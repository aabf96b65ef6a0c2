"""A machine that boots from the network and gets its seed over HTTP from `k8sseed serve` instead of an ISO,
and whose bootstrap phases show up in `k8sseed status`: what a PXE-booted rack does, firmware included.

No seed ISO and no -kernel: the VM's NIC (an e1000) runs iPXE (Debian's ipxe-qemu option ROM, qemu.IPXE_ROM),
which takes the server's entry script as its DHCP boot file (QEMU user networking's `bootfile=`), chains to
the machine's own script by its MAC, fetches the kernel and initrd that script names and boots them with
`ds=nocloud-net;s=http://10.20.0.5:8080/by-mac/<mac>/` and the node's network-config. QEMU user networking
with restrict=on forwards 10.20.0.5:8080 inside the VM to the server on 127.0.0.1 (a bridge process per
connection); the mirror, which also holds the kernel and initrd, is at 10.20.0.2:8080 as in
test_vm_reference. Nothing leaves the VM.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import qemu
from mirrored_seeds import K8SSEED, MIRROR, build_behind_mirror
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


def _status(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=10) as response:
        return {row["node"]: row for row in json.loads(response.read())["nodes"]}


def test_a_node_netbooted_by_ipxe_gets_its_seed_over_http_and_reports_its_phases(tmp_path: Path):
    """Stops the VM once the node reports its kubeadm phase (~4 min under TCG instead of ~7 for the whole
    bootstrap); test_vm_reference boots the same seed from its ISO through to the end."""
    if not qemu.IPXE_ROM.is_file():
        pytest.fail(f"{qemu.IPXE_ROM} missing: apt-get install ipxe-qemu (make e2e-deps)")
    image = qemu.ensure_image()
    vm = qemu.VM(image, None, workdir=tmp_path / "vm", name="http-cp-1", collect=False, netboot=True,
                 qemu_args=["-device", "sga"])  # SGABIOS: iPXE's own messages go to the serial console too
    pxe = {"kernel": f"{MIRROR}/boot/vmlinuz", "initrd": f"{MIRROR}/boot/initrd.img",
           "kernelArgs": vm.kernel_arguments()}
    profile, out, mirror = build_behind_mirror(tmp_path, "reference.yaml", mirrors=IMAGE_MIRRORS,
                                               served={"calico/v3.25.2/tigera-operator.yaml": OPERATOR_MANIFEST},
                                               sections={"seedServer": {"url": SERVER, "pxe": pxe}})
    (mirror / "boot").mkdir()
    shutil.copyfile(image.kernel, mirror / "boot" / "vmlinuz")
    shutil.copyfile(image.initrd, mirror / "boot" / "initrd.img")
    node = next(n for n in profile["nodes"] if n["name"] == "cp-1")
    vm.mac = node["mac"]
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
                  f"guestfwd=tcp:10.20.0.5:8080-cmd:{sys.executable} {tmp_path / 'bridge.py'} {port},"
                  f"bootfile={SERVER}ipxe/boot.ipxe")
        vm.netdev = netdev
        vm.start()
        started = time.monotonic()
        rows: dict[str, dict] = {}
        # Measured 256-331 s under TCG on the 2-core test machine (its speed varies with the host): 330 s
        # was too tight a budget for the phase to be reached.
        while time.monotonic() - started < 600:
            rows = _status(port)
            if rows["cp-1"]["phase"] in ("kubeadm", "addons", "bootstrap") or not vm.running():
                break
            time.sleep(2)
        print(f"\nseeded over HTTP, kubeadm phase reported after {time.monotonic() - started:.0f}s: {rows.get('cp-1')}")
        reached = rows["cp-1"]["phase"] in ("kubeadm", "addons", "bootstrap")
        assert reached, (rows.get("cp-1"), vm.console_text()[-3000:])
        time.sleep(1.0)  # the server saves its board within half a second of the last report
        table = subprocess.run([K8SSEED, "status", str(out)], capture_output=True, text=True, check=True).stdout
        lines = {line.split()[0]: line for line in table.splitlines()}
        assert re.search(r"control-plane\s+(kubeadm|addons|bootstrap) ", lines["cp-1"]), table
        assert "no report yet" in lines["cp-2"], table
    finally:
        if vm.running():
            vm.kill()
        server.terminate()
        server.wait(timeout=30)
    served = log_path.read_text()
    # the firmware's path: the entry script from DHCP, then this machine's script, found by its MAC
    assert "GET /ipxe/boot.ipxe 200" in served, served[-3000:]
    # iPXE percent-encodes the colons of ${net0/mac} in the URL path (52%3A54%3A...): the server decodes them
    chained = re.findall(r"GET /ipxe/by-mac/(\S+)\.ipxe 200", served)
    assert [urllib.parse.unquote(mac) for mac in chained] == [node["mac"]], served[-3000:]
    command_line = re.search(r"Command line: (.*)", vm.console_text())
    assert command_line and f"ds=nocloud-net;s={SERVER}by-mac/{node['mac']}/" in command_line.group(1), \
        vm.console_text()[:3000]
    for name in ("meta-data", "user-data", "vendor-data"):
        assert f"GET /by-mac/{node['mac']}/{name} 200" in served, served[-3000:]
    reports = re.findall(r"POST /status/cp-1 (\d+) \S+ (?:status cp-1: (\S+) (\S+))?", served)
    assert reports and all(code in ("204", "202") for code, _, _ in reports), reports
    received = {(phase, state) for _, phase, state in reports}
    for phase in PHASES[:4]:  # prepare-os .. load-balancer, each begun and finished
        assert (phase, "started") in received and (phase, "done") in received, (phase, sorted(received))
    assert ("kubeadm", "started") in received
