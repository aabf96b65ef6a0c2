"""`make e2e` on a fresh machine builds the VM image first (minutes): its steps reach the terminal as they happen.

These tests use a stand-in build script and boot nothing: they run with the normal (non-VM) suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import qemu

HERE = Path(__file__).resolve().parent

FAKE_BUILD = """#!/bin/bash
set -euo pipefail
case "${1:-}" in
  --print) exit 3 ;;
  --key) echo fakekey0123456789; exit 0 ;;
esac
log() { echo "[build_image $(date +%T)] $*" >&2; }
log "debootstrap bookworm (minbase)"
sleep 1.2
log "apt-get install 30+0 packages in chroot"
sleep 2.5
echo "some apt detail" >&2
log "built /cache/fakekey in 4 s"
echo IMAGE=/cache/fakekey/rootfs.img
echo KERNEL=/cache/fakekey/vmlinuz
echo INITRD=/cache/fakekey/initrd.img
echo KEY=fakekey0123456789
"""


def test_image_build_steps_are_reported_as_they_start_with_their_elapsed_time(tmp_path, monkeypatch):
    script = tmp_path / "build_image.sh"
    script.write_text(FAKE_BUILD)
    monkeypatch.setattr(qemu, "BUILD_SCRIPT", script)
    heard: list[tuple[float, str]] = []
    start = time.monotonic()
    image = qemu.ensure_image(progress=lambda line: heard.append((time.monotonic() - start, line)), heartbeat=1.0)
    total = time.monotonic() - start
    assert image.rootfs == Path("/cache/fakekey/rootfs.img") and image.key == "fakekey0123456789"
    lines = [line for _, line in heard]
    assert "not cached: building it" in lines[0] and "fakekey0123456789" in lines[0]
    steps = [(when, line) for when, line in heard if line.startswith("[build_image")]
    assert [line.split("] ")[1].split("  (")[0] for _, line in steps] == [
        "debootstrap bookworm (minbase)", "apt-get install 30+0 packages in chroot", "built /cache/fakekey in 4 s"]
    assert steps[0][0] < total - 3, "the first step was reported only at the end"
    assert "previous step 1 s" in steps[1][1] or "previous step 2 s" in steps[1][1]
    assert any("still: apt-get install" in line for line in lines), "no heartbeat during a long step"
    assert "  some apt detail" in lines
    assert lines[-1].startswith("VM image ready after")


def test_a_failed_image_build_reports_its_log(tmp_path, monkeypatch):
    script = tmp_path / "build_image.sh"
    script.write_text(FAKE_BUILD.replace('sleep 2.5\n', 'echo "E: Unable to locate package nope" >&2; exit 1\n'))
    monkeypatch.setattr(qemu, "BUILD_SCRIPT", script)
    try:
        qemu.ensure_image(progress=lambda line: None)
    except qemu.VMError as exc:
        assert "Unable to locate package nope" in str(exc)
    else:
        raise AssertionError("no VMError")


def test_progress_lines_pass_pytests_output_capture(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("vm_conftest", {str(HERE / "conftest.py")!r})
        vm_conftest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vm_conftest)

        def test_probe(request):
            print("CAPTURED-ONLY")
            vm_conftest.terminal_progress(request.config)("[build_image 01:02:03] PROGRESS-REACHES-THE-TERMINAL")
    """))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROGRESS-REACHES-THE-TERMINAL" in result.stdout
    assert "CAPTURED-ONLY" not in result.stdout
