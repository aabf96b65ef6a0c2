"""Fixtures for the VM tests (tests/vm). Run them with: pytest -m vm tests/vm"""
import contextlib
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import qemu  # noqa: E402  (tests/vm/qemu.py)


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots QEMU VMs (root, qemu, debootstrap; minutes per test)")


def terminal_progress(config):
    """A function that prints one line on the terminal now, past pytest's output capture."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(line):
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line, file=sys.stderr, flush=True)

    return say


@pytest.fixture(scope="session")
def vm_image(request):
    """The cached Debian 12 test image, built on first use (several minutes, needs the mirror)."""
    missing = qemu.missing_prerequisites(build=True)
    if missing:
        pytest.skip("VM tests need " + ", ".join(missing) +
                    " (apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs xorriso; run as root)")
    return qemu.ensure_image(progress=terminal_progress(request.config))


@pytest.fixture(scope="session")
def vm_accel(vm_image):
    return qemu.probe_accel(vm_image)
