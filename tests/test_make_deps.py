"""`make deps` installs the test tools without starting their daemons and leaves the units they enable disabled.

tools/apt-install-disabled.sh runs here against stand-ins for apt-get and systemctl (a package that enables
etcd.service and frr.service and starts etcd through invoke-rc.d, as Debian's packages do), with and without a
running systemd; the real apt-get would need root and the network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require_tool

SCRIPT = REPO / "tools" / "apt-install-disabled.sh"

# systemctl: enabled units are files in $STATE/enabled; stop/disable calls are logged to $STATE/calls.
SYSTEMCTL = r"""#!/bin/bash
set -eu
echo "$*" >>"$STATE/calls"
case "$1" in
  list-unit-files)
    for u in "$STATE"/enabled/*; do
      if [[ -e $u ]]; then echo "$(basename "$u") enabled enabled"; fi
    done ;;
  disable) rm -f "$STATE/enabled/${@: -1}" ;;
  stop) rm -f "$STATE/running/$2" ;;
esac
"""
# apt-get: the packages' maintainer scripts enable their units, and start etcd unless policy-rc.d forbids it.
APT_GET = r"""#!/bin/bash
set -eu
echo "apt-get $*" >>"$STATE/calls"
touch "$STATE/enabled/etcd.service" "$STATE/enabled/frr.service"
if [[ -x $POLICY_RC_D ]] && ! "$POLICY_RC_D" etcd.service start; then
  echo "invoke-rc.d: policy-rc.d denied start of etcd.service" >>"$STATE/calls"
else
  touch "$STATE/running/etcd.service"
fi
"""


def _stubs(tmp_path: Path, enabled_before: tuple[str, ...]) -> dict[str, str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    for folder in (bin_dir, state / "enabled", state / "running"):
        folder.mkdir(parents=True)
    for name, text in (("systemctl", SYSTEMCTL), ("apt-get", APT_GET)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for unit in enabled_before:
        (state / "enabled" / unit).touch()
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state),
            "POLICY_RC_D": str(tmp_path / "policy-rc.d")}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "etcd-server", "frr"], capture_output=True, text=True, env=env, timeout=60)


def test_the_makefile_installs_every_package_list_through_the_script():
    dry = subprocess.run(["make", "-n", "-s", "deps", "e2e-deps"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "apt-get install" not in dry
    assert dry.count("tools/apt-install-disabled.sh ") == 2 and "etcd-server" in dry and "qemu-system-x86" in dry


def test_daemons_the_packages_enable_are_left_disabled_and_never_started(tmp_path):
    env = _stubs(tmp_path, enabled_before=("frr.service",))
    result = _run(env)
    assert result.returncode == 0, result.stderr
    state = Path(env["STATE"])
    assert sorted(p.name for p in (state / "enabled").iterdir()) == ["frr.service"], "frr was enabled before: kept"
    assert not (state / "running" / "etcd.service").exists(), "policy-rc.d kept etcd from starting"
    calls = (state / "calls").read_text()
    assert "policy-rc.d denied start of etcd.service" in calls and "disable --quiet etcd.service" in calls
    assert "disable --quiet frr.service" not in calls
    assert "left disabled (the packages just installed had enabled them): etcd.service" in result.stdout
    assert not Path(env["POLICY_RC_D"]).exists(), "the temporary policy-rc.d is removed"


def test_someone_elses_policy_rc_d_is_kept(tmp_path):
    env = _stubs(tmp_path, enabled_before=())
    policy = Path(env["POLICY_RC_D"])
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    assert _run(env).returncode == 0
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"
    assert sorted(p.name for p in (Path(env["STATE"]) / "enabled").iterdir()) == []


@pytest.mark.parametrize("systemd_running", [False, True], ids=["no-systemd", "systemd"])
def test_new_units_are_stopped_only_where_systemd_runs(tmp_path, systemd_running):
    env = _stubs(tmp_path, enabled_before=())
    env["SYSTEMD_RUNNING_MARK"] = str(tmp_path / "run-systemd-system")
    if systemd_running:
        (tmp_path / "run-systemd-system").mkdir()
    assert _run(env).returncode == 0
    calls = (Path(env["STATE"]) / "calls").read_text()
    assert ("stop etcd.service" in calls) is systemd_running
    assert "disable --quiet etcd.service" in calls and "disable --quiet frr.service" in calls


def test_the_script_passes_shellcheck():
    subprocess.run([require_tool("shellcheck"), str(SCRIPT)], check=True)
