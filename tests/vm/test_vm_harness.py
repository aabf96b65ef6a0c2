"""Self-test of the harness features the product's VM tests rely on: waiting for
k8sseed-bootstrap.service, killing a VM mid-run, booting the same overlay again (resume), and a
third boot (idempotence). The "bootstrap" here is a fake written by the seed, not k8sseed's."""
import json

import pytest
import qemu

# The product's VM tests use every feature shown here (kill, resume, reboot) with the real bootstrap, so CI's
# time goes to them: this self-test runs with `make e2e-harness` when the harness itself changes.
pytestmark = [pytest.mark.vm, pytest.mark.vm_selftest]

MAC = "52:54:00:5e:ed:02"

FAKE_BOOTSTRAP = r"""#!/bin/bash
# fake phased bootstrap: a marker per phase, skips finished phases
mkdir -p /var/lib/k8sseed /etc/k8sseed
log() { echo "$(date +%T) [$1] $2" >>/var/log/k8sseed-bootstrap.log; sync; }
for p in prepare-os runtime kubeadm; do
  if [ -e "/var/lib/k8sseed/$p.done" ]; then log "$p" "already done"; continue; fi
  log "$p" start
  if [ "$p" = runtime ]; then sleep 25; fi
  if [ "$p" = kubeadm ]; then
    echo "kind: InitConfiguration" >/etc/k8sseed/kubeadm.yaml
    # like k8sseed, place a CA before init (the kubeadm stand-in signs its API server certificate with it)
    mkdir -p /etc/kubernetes/pki
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=harness-ca \
      -addext basicConstraints=critical,CA:TRUE \
      -keyout /etc/kubernetes/pki/ca.key -out /etc/kubernetes/pki/ca.crt 2>/dev/null
    kubeadm init --config /etc/k8sseed/kubeadm.yaml >/dev/null || { log "$p" "kubeadm init failed"; exit 1; }
  fi
  touch "/var/lib/k8sseed/$p.done"; sync
  log "$p" "done"
done
"""

UNIT = """[Unit]
Description=fake k8sseed bootstrap (harness self-test)
After=network-online.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/fake-bootstrap
[Install]
WantedBy=multi-user.target
"""


def _indent(s):
    return "\n".join("      " + line for line in s.splitlines())


USER_DATA = f"""#cloud-config
hostname: harness
write_files:
  - path: /usr/local/sbin/fake-bootstrap
    permissions: '0755'
    content: |
{_indent(FAKE_BOOTSTRAP)}
  - path: /etc/systemd/system/k8sseed-bootstrap.service
    content: |
{_indent(UNIT)}
runcmd:
  - systemctl daemon-reload
  - systemctl enable k8sseed-bootstrap.service
  - systemctl start --no-block k8sseed-bootstrap.service
"""
META_DATA = "instance-id: harness-1\nlocal-hostname: harness\n"


def test_kill_resume_and_reboot(vm_image, vm_accel, tmp_path):
    iso = qemu.make_seed_iso(tmp_path / "harness.iso", USER_DATA, META_DATA)
    with qemu.VM(vm_image, iso, MAC, workdir=tmp_path / "vm", name="harness",
                 collect_timeout=500) as vm:
        # boot 1: pull the plug in the middle of the "runtime" phase
        vm.start()
        m = vm.wait_for_console(r"K8SSEED-LOG: .*\[runtime\] start", timeout=400)
        assert m, vm.console_text()[-3000:]
        first = vm.stop()
        assert first.killed and not first.complete

        # boot 2, same overlay: the bootstrap resumes and finishes
        vm.start()
        second = vm.wait(timeout=600)
        assert second.complete and second.returncode == 0, second.summary()
        assert second.meta["reason"] == "bootstrap-finished", second.meta
        assert second.meta["bootstrap"]["active_state"] == "active", second.meta
        assert not second.failed_units(), second.failed_units_report()
        log = second.text("k8sseed-bootstrap.log")
        assert "[prepare-os] already done" in log, log
        assert log.count("[runtime] start") == 2, log
        inits = [c for c in second.standin_calls("kubeadm") if c["argv"][:1] == ["init"]]
        assert len(inits) == 1, inits
        assert inits[0]["files"] == {"/etc/k8sseed/kubeadm.yaml": "kind: InitConfiguration"}
        assert second.path("etc-kubernetes/admin.conf") is not None
        assert second.path("var-lib-k8sseed/kubeadm.done") is not None

        # boot 3: nothing left to do
        vm.start()
        third = vm.wait(timeout=600)
        assert third.complete, third.summary()
        assert third.meta["reason"] == "bootstrap-finished", third.meta
        assert third.meta["boot_id"] != second.meta["boot_id"]
        assert not third.failed_units(), third.failed_units_report()
        assert third.text("k8sseed-bootstrap.log").count("[kubeadm] already done") == 1
        assert len([c for c in third.standin_calls("kubeadm") if c["argv"][:1] == ["init"]]) == 1
        print("\n" + json.dumps({r.boot: round(r.wall_seconds) for r in vm.history}))
