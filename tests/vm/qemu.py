"""Boot the k8sseed VM test image under QEMU and read the results back (stdlib only).

Typical use from a test::

    import qemu
    image = qemu.ensure_image()                    # builds once (root), cached outside the repo
    res = qemu.boot(image, "out/cp1.iso", "52:54:00:00:00:11", timeout=900)
    assert res.complete, res.summary()
    assert res.cloud_init_status()["status"] == "done"
    assert res.text("hostname.txt").strip() == "cp1"

Lower level, for idempotence (boot the same overlay twice) and resume (kill mid-run) tests::

    vm = qemu.VM(image, iso, mac, workdir=tmp_path)
    vm.start()
    vm.wait_for_console(r"K8SSEED-LOG: .*runtime", timeout=600)   # bootstrap log lines
    vm.kill()                                   # pull the plug; the overlay is kept
    vm.start()                                  # boots the same overlay again
    res = vm.wait(timeout=900)                  # VMResult of the second boot

How results get out without a network: every boot gets a fresh ext4 "results disk" (label
K8SRESULTS, second virtio disk). The image's k8sseed-test-collect.service waits for cloud-init
and k8sseed-bootstrap.service, writes /k8sseed-results/* onto that disk and powers off; this
module copies that directory back with `debugfs -R rdump` (no loop device, no mount).
See tests/vm/README.md for the list of files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build_image.sh"
QEMU = os.environ.get("K8SSEED_VM_QEMU", "qemu-system-x86_64")
RESULTS_LABEL = "K8SRESULTS"
# Debian's ipxe-qemu: iPXE as the option ROM of an emulated Intel NIC (legacy BIOS and EFI in one file). Not the
# virtio NIC's: SeaBIOS 1.16 never runs efi-virtio.rom on q35's virtio-net (its option-ROM scan skips it; seen
# with the isa-debugcon log), so the netbooting NIC is an e1000, which the guest kernel drives as well.
IPXE_ROM = Path(os.environ.get("K8SSEED_VM_IPXE_ROM", "/usr/lib/ipxe/qemu/efi-e1000.rom"))
NETBOOT_NIC = "e1000"
RESULTS_DIR_IN_DISK = "k8sseed-results"
DEFAULT_MEMORY_MB = 1200


def cache_dir() -> Path:
    return Path(os.environ.get("K8SSEED_VM_CACHE", "/var/cache/k8sseed-vm"))


class VMError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# prerequisites and the image


def missing_prerequisites(build: bool = True) -> list[str]:
    """What keeps VM tests from running here (empty list: all there)."""
    missing = []
    tools = [QEMU, "qemu-img", "debugfs", "mkfs.ext4"]
    if build:
        tools.append("debootstrap")
    for tool in tools:
        if shutil.which(tool) is None:
            missing.append(f"{tool} not found")
    if os.geteuid() != 0:
        missing.append("not root")
    return missing


@dataclasses.dataclass(frozen=True)
class Image:
    rootfs: Path
    kernel: Path
    initrd: Path
    key: str = ""
    info: dict = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls, text: str) -> Image:
        env = _parse_env(text)
        return cls(Path(env["IMAGE"]), Path(env["KERNEL"]), Path(env["INITRD"]), env.get("KEY", ""), env)

    @classmethod
    def from_rootfs(cls, rootfs: os.PathLike | str) -> Image:
        """An image given by its rootfs.img; vmlinuz and initrd.img sit beside it."""
        rootfs = Path(rootfs).resolve()
        env_file = rootfs.parent / "image.env"
        if env_file.exists():
            return cls.from_env(env_file.read_text())
        return cls(rootfs, rootfs.parent / "vmlinuz", rootfs.parent / "initrd.img")


def _parse_env(text: str) -> dict:
    env = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def find_image() -> Image | None:
    """The cached image matching the current recipe, or None if it is not built."""
    p = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], capture_output=True, text=True)
    if p.returncode == 3:
        return None
    if p.returncode != 0:
        raise VMError(f"build_image.sh --print failed: {p.stderr}")
    return Image.from_env(p.stdout)


def ensure_image(timeout: float = 3600, progress: Callable[[str], None] | None = None,
                 heartbeat: float = 30.0) -> Image:
    """Build the image if needed (root, network to the Debian mirror) and return it.

    A build takes minutes: `progress` gets each step build_image.sh logs as it starts, with the time the
    previous step took and the time so far, and a "still ..." line every `heartbeat` seconds of a long step.
    """
    img = find_image()
    if img is not None:
        return img
    say = progress or (lambda line: None)
    start = step_start = time.monotonic()
    step = "starting build_image.sh"
    say(f"VM image {_image_key()} is not cached: building it (several minutes; once per recipe)")
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streams = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    lines: list[str] = []
    last_said = start
    with selectors.DefaultSelector() as sel:
        for stream in streams:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if now - start > timeout:
                proc.kill()
                proc.wait()
                raise VMError(f"build_image.sh took more than {timeout:.0f} s; last step: {step}")
            if now - last_said >= heartbeat:
                say(f"  ... still: {step} ({now - step_start:.0f} s in this step, {now - start:.0f} s in all)")
                last_said = now
            for key, _ in sel.select(timeout=min(heartbeat, 5.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                streams[key.fileobj] += chunk
                if key.fileobj is proc.stderr:
                    *done, rest = streams[proc.stderr].split(b"\n")
                    streams[proc.stderr] = bytearray(rest)
                    for raw in done:
                        line = raw.decode("utf-8", "replace")
                        lines.append(line)
                        now = time.monotonic()
                        if line.startswith("[build_image"):
                            say(f"{line}  (previous step {now - step_start:.0f} s, {now - start:.0f} s in all)")
                            step, step_start = line.split("] ", 1)[-1], now
                        else:
                            say(f"  {line}")
                        last_said = now
    proc.wait()
    if proc.returncode != 0:
        raise VMError(f"build_image.sh failed ({proc.returncode}):\n" + "\n".join(lines)[-4000:])
    say(f"VM image ready after {time.monotonic() - start:.0f} s")
    return Image.from_env(bytes(streams[proc.stdout]).decode("utf-8", "replace"))


def _image_key() -> str:
    p = subprocess.run(["bash", str(BUILD_SCRIPT), "--key"], capture_output=True, text=True)
    return p.stdout.strip() or "?"


def _as_image(image: Image | os.PathLike | str) -> Image:
    return image if isinstance(image, Image) else Image.from_rootfs(image)


# --------------------------------------------------------------------------------------------
# accelerator probe: /dev/kvm may exist yet hang a stock kernel; fall back to TCG

_ACCEL_MEMO: dict[str, str] = {}
PROBE_MARKERS = ("Run /init as init process", "Freeing unused kernel")


def _qemu_version() -> str:
    try:
        return subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


def probe_accel(image: Image | os.PathLike | str, timeout: float = 15.0, use_cache: bool = True) -> str:
    """'kvm' if KVM boots the image's kernel to its initramfs within `timeout` s, else 'tcg'.

    Override with K8SSEED_VM_ACCEL=kvm|tcg. The result is cached in memory and in
    <cache>/accel-probe.json, keyed by host kernel, QEMU version and guest kernel.
    """
    forced = os.environ.get("K8SSEED_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    image = _as_image(image)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    st = image.kernel.stat()
    key = f"{os.uname().release}|{_qemu_version()}|{image.kernel}|{st.st_size}|{int(st.st_mtime)}"
    if use_cache and key in _ACCEL_MEMO:
        return _ACCEL_MEMO[key]
    cache_file = cache_dir() / "accel-probe.json"
    cached: dict = {}
    if use_cache and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key and cached.get("accel") in ("kvm", "tcg"):
                _ACCEL_MEMO[key] = cached["accel"]
                return cached["accel"]
        except (OSError, ValueError):
            pass
    accel, detail = _run_kvm_probe(image, timeout)
    _ACCEL_MEMO[key] = accel
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({"key": key, "accel": accel, "detail": detail,
                                          "probed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    except OSError:
        pass
    return accel


def _run_kvm_probe(image: Image, timeout: float) -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="k8sseed-kvm-probe-") as td:
        log = Path(td) / "console.log"
        cmd = [QEMU, "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "kvm",
               "-cpu", "host", "-m", "256", "-smp", "1", "-display", "none", "-monitor", "none",
               "-serial", f"file:{log}", "-no-reboot", "-kernel", str(image.kernel),
               "-initrd", str(image.initrd),
               "-append", "console=ttyS0 panic=-1 rdinit=/nonexistent-k8sseed-probe"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.monotonic() - t0 < timeout:
                text = log.read_text(errors="replace") if log.exists() else ""
                if any(m in text for m in PROBE_MARKERS):
                    return "kvm", f"kernel reached init in {time.monotonic() - t0:.1f}s under KVM"
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    return "tcg", f"qemu -accel kvm exited {proc.returncode}: {err.strip()[:300]}"
                time.sleep(0.25)
            text = log.read_text(errors="replace") if log.exists() else ""
            return "tcg", f"no init within {timeout}s under KVM; console had {len(text)} bytes"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


# --------------------------------------------------------------------------------------------
# results


@dataclasses.dataclass
class VMResult:
    """One boot's outcome. `results_dir` holds what the guest collector wrote (see README)."""
    name: str
    boot: int
    accel: str
    returncode: int | None
    timed_out: bool
    killed: bool
    wall_seconds: float
    console_path: Path
    results_dir: Path | None
    overlay: Path
    workdir: Path
    vm: VM | None = dataclasses.field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """The collector ran to its end (the COMPLETE marker is on the results disk)."""
        return self.results_dir is not None and (self.results_dir / "COMPLETE").exists()

    @property
    def meta(self) -> dict:
        return self.json("meta.json", {}) or {}

    @property
    def commands(self) -> dict:
        return self.json("commands.json", {}) or {}

    def path(self, name: str) -> Path | None:
        if self.results_dir is None:
            return None
        p = self.results_dir / name
        return p if p.exists() else None

    def text(self, name: str, default: str | None = None) -> str | None:
        p = self.path(name)
        return p.read_text(errors="replace") if p and p.is_file() else default

    def json(self, name: str, default: Any = None) -> Any:
        t = self.text(name)
        if t is None:
            return default
        try:
            return json.loads(t)
        except ValueError:
            return default

    def console(self) -> str:
        return self.console_path.read_text(errors="replace") if self.console_path.exists() else ""

    def cloud_init_status(self) -> dict:
        """{'status': 'done'|'error'|..., 'datasource': ..., 'errors': [...], ...}."""
        js = self.json("cloud-init-status.json")
        if isinstance(js, dict):
            return js
        out: dict = {}
        for line in (self.text("cloud-init-status.txt") or "").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip().replace(" ", "_")] = v.strip()
        return out

    def interfaces(self) -> list[dict]:
        """`ip -j addr` from the guest."""
        return self.json("ip-addr.json", []) or []

    def interface_by_mac(self, mac: str) -> dict | None:
        for itf in self.interfaces():
            if itf.get("address", "").lower() == mac.lower():
                return itf
        return None

    def addresses(self, mac: str, family: str = "inet") -> list[str]:
        """['10.0.2.15/24', ...] on the NIC with this MAC."""
        itf = self.interface_by_mac(mac) or {}
        return [f"{a['local']}/{a['prefixlen']}" for a in itf.get("addr_info", []) if a.get("family") == family]

    def extra(self, path: str) -> Path | None:
        """A file or directory copied because of VM(collect_extra=[path]), or None."""
        return self.path("extra/" + path.lstrip("/"))

    def standin_calls(self, tool: str | None = None) -> list[dict]:
        """Calls of the kubeadm/kubelet/kubectl/cri-dockerd stand-ins: {time, tool, argv, files}."""
        calls = []
        for line in (self.text("k8sseed-standin.jsonl") or "").splitlines():
            try:
                c = json.loads(line)
            except ValueError:
                continue
            if tool is None or c.get("tool") == tool:
                calls.append(c)
        return calls

    def failed_units(self) -> list[str]:
        """Units systemd listed as failed when the collector ran (`systemctl list-units --state=failed`)."""
        text = self.text("failed-units.txt")
        assert text is not None, f"{self.name} boot {self.boot}: the collector recorded no failed-units.txt"
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def failed_units_report(self) -> str:
        """For assertion messages: which units failed and their `systemctl status`."""
        return (f"VM {self.name} boot {self.boot}: failed units {self.failed_units()}\n"
                + (self.text("failed-units-status.txt") or ""))

    def summary(self, tail: int = 60) -> str:
        """For assertion messages: state, collector meta and the end of the console."""
        lines = self.console().splitlines()[-tail:]
        return (f"VM {self.name} boot {self.boot}: accel={self.accel} rc={self.returncode} "
                f"timed_out={self.timed_out} killed={self.killed} wall={self.wall_seconds:.0f}s "
                f"complete={self.complete}\nmeta={json.dumps(self.meta)}\nresults={self.results_dir}\n"
                f"console {self.console_path} (last {tail} lines):\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------
# the VM


def _drive_path(p: os.PathLike | str) -> str:
    return str(p).replace(",", ",,")


class VM:
    """One VM: an overlay over the image that survives reboots, one QEMU process at a time.

    extra_net: more NICs, each a MAC (QEMU user networking with restrict=on, like the first one),
    a (mac, netdev) tuple such as ("52:54:00:00:00:21", "socket,listen=127.0.0.1:20001") or a
    dict {"mac": ..., "netdev": ...}. Only loopback or test-owned namespaces may be reached:
    user networking always gets restrict=on.

    netns: run QEMU inside this (test-made) network namespace (`ip netns exec NS qemu...`, which execs
    QEMU: the PID stays QEMU's), e.g. with netdev="tap,ifname=TAP,script=no,downscript=no" for a tap
    the test put on a bridge in that namespace.

    netboot: no -kernel: the firmware boots from the first NIC (an e1000) with iPXE (IPXE_ROM), which takes its boot
    file from DHCP (QEMU user networking: `bootfile=URL` in netdev). The kernel command line is then the iPXE
    script's: kernel_arguments() is what it must carry for this harness (root disk, console, collection).
    """

    def __init__(self, image: Image | os.PathLike | str, seed_iso: os.PathLike | str | None,
                 mac: str = "52:54:00:12:34:56", *, workdir: os.PathLike | str | None = None,
                 name: str = "vm", memory_mb: int = DEFAULT_MEMORY_MB, smp: int = 2,
                 accel: str | None = None, extra_net: Iterable | None = None,
                 overlay: os.PathLike | str | None = None, collect: bool = True,
                 collect_timeout: int = 900, collect_grace: int = 30, poweroff: bool = True,
                 collect_extra: Sequence[str] = (), append: str = "", qemu_args: Sequence[str] = (),
                 netdev: str = "user", netns: str | None = None, netboot: bool = False):
        self.image = _as_image(image)
        self.seed_iso = Path(seed_iso).resolve() if seed_iso else None
        self.mac = mac
        self.name = name
        self.memory_mb = memory_mb
        self.smp = smp
        self.accel = accel
        self.extra_net = list(extra_net or [])
        self.collect = collect
        self.collect_timeout = collect_timeout
        self.collect_grace = collect_grace
        self.poweroff = poweroff
        self.collect_extra = list(collect_extra)
        for p in self.collect_extra:
            if not p.startswith("/") or any(c in p for c in ", \t\n\"'"):
                raise VMError(f"collect_extra: absolute paths without commas or spaces only: {p!r}")
        self.append = append
        self.qemu_args = list(qemu_args)
        self.netdev = netdev
        self.netns = netns
        self.netboot = netboot
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"k8sseed-vm-{name}-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.overlay = Path(overlay).resolve() if overlay else self.workdir / f"{name}-overlay.qcow2"
        self.boots = 0
        self.proc: subprocess.Popen | None = None
        self._t0 = 0.0
        self._killed = False
        self.history: list[VMResult] = []

    # -- paths of the current boot
    @property
    def console_path(self) -> Path:
        return self.workdir / f"{self.name}-console-{self.boots}.log"

    @property
    def results_disk(self) -> Path:
        return self.workdir / f"{self.name}-results-{self.boots}.img"

    @property
    def results_out(self) -> Path:
        return self.workdir / f"{self.name}-results-{self.boots}"

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc) -> None:
        if self.running():
            self.kill()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _netdevs(self) -> list[str]:
        nics: list[tuple[str, str]] = [(self.mac, self.netdev)]
        for spec in self.extra_net:
            if isinstance(spec, str):
                nics.append((spec, "user,restrict=on"))
            elif isinstance(spec, dict):
                nics.append((spec["mac"], spec.get("netdev", "user,restrict=on")))
            else:
                nics.append((spec[0], spec[1]))
        args = []
        for i, (mac, netdev) in enumerate(nics):
            if netdev.split(",")[0] == "user":   # never let a VM reach out
                netdev = ",".join(o for o in netdev.split(",") if not o.startswith("restrict=")) + ",restrict=on"
            model, rom = (NETBOOT_NIC, str(IPXE_ROM)) if self.netboot and i == 0 else ("virtio-net-pci", "")
            args += ["-netdev", f"{netdev},id=n{i}",
                     "-device", f"{model},netdev=n{i},mac={mac},romfile={rom}"]
        return args

    def kernel_arguments(self) -> list[str]:
        """The guest kernel's command line this harness boots with (collection and speed settings); a netboot
        VM needs them in its iPXE script."""
        accel = self.accel or probe_accel(self.image)
        self.accel = accel
        append = ["root=/dev/vda", "rw", "console=ttyS0,115200", "panic=-1"]
        if self.collect:
            append += ["k8sseed.collect=1", f"k8sseed.collect_timeout={int(self.collect_timeout)}",
                       f"k8sseed.collect_grace={int(self.collect_grace)}",
                       f"k8sseed.poweroff={1 if self.poweroff else 0}"]
            if self.collect_extra:
                append.append("k8sseed.collect_extra=" + ",".join(self.collect_extra))
        if accel != "kvm":
            # emulated CPU: no speculative-execution hardening to pay for in every syscall (~8% of a TCG boot)
            append.append("mitigations=off")
        return append

    def command(self) -> list[str]:
        append = self.kernel_arguments()
        accel = self.accel
        if self.append:
            append.append(self.append)
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += [QEMU, "-name", f"k8sseed-{self.name}", "-nodefaults", "-no-user-config",
                "-machine", "q35"]
        if accel == "kvm":
            cmd += ["-accel", "kvm", "-cpu", "host"]
        else:
            cmd += ["-accel", "tcg,thread=multi", "-cpu", "max"]
        cmd += ["-smp", str(self.smp), "-m", str(self.memory_mb),
                "-display", "none", "-monitor", "none", "-serial", f"file:{self.console_path}",
                "-no-reboot"]
        if self.netboot:
            if self.append:
                raise VMError("netboot: the kernel command line is the iPXE script's; append cannot add to it")
            cmd += ["-boot", "order=n"]
        else:
            cmd += ["-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd), "-append", " ".join(append)]
        cmd += ["-drive", f"file={_drive_path(self.overlay)},if=none,id=root,format=qcow2",
                "-device", "virtio-blk-pci,drive=root",
                "-drive", f"file={_drive_path(self.results_disk)},if=none,id=results,format=raw",
                "-device", "virtio-blk-pci,drive=results",
                "-object", "rng-random,id=rng0,filename=/dev/urandom",
                "-device", "virtio-rng-pci,rng=rng0"]
        if self.seed_iso:
            cmd += ["-drive", f"file={_drive_path(self.seed_iso)},if=none,id=seed,media=cdrom,"
                              "readonly=on,format=raw",
                    "-device", "ide-cd,drive=seed"]
        cmd += self._netdevs()
        cmd += self.qemu_args
        return cmd

    def start(self) -> VM:
        """Boot (again): the overlay is created on the first boot and kept afterwards."""
        if self.running():
            raise VMError(f"VM {self.name} is already running")
        for f in (self.image.rootfs, self.image.kernel, self.image.initrd):
            if not Path(f).exists():
                raise VMError(f"image file missing: {f}")
        if not self.overlay.exists():
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.rootfs), "-F", "raw",
                  str(self.overlay)])
        self.boots += 1
        self._killed = False
        if self.results_disk.exists():
            self.results_disk.unlink()
        _run(["mkfs.ext4", "-q", "-F", "-L", RESULTS_LABEL, "-O", "^has_journal",
              str(self.results_disk), "256M"])
        cmd = self.command()
        (self.workdir / f"{self.name}-qemu-{self.boots}.cmd").write_text(
            " ".join(_shquote(c) for c in cmd) + "\n")
        self._stderr = open(self.workdir / f"{self.name}-qemu-{self.boots}.stderr", "wb")  # noqa: SIM115 (closed in _result)
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr)
        return self

    def console_text(self) -> str:
        p = self.console_path
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_for_console(self, pattern: str, timeout: float) -> re.Match | None:
        """Wait until the serial console matches `pattern` (regex, MULTILINE); None if the
        VM stopped or the time ran out first. Bootstrap log lines appear as 'K8SSEED-LOG: ...'."""
        rx = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console_text())
            if m:
                return m
            if not self.running() or time.monotonic() > deadline:
                return None
            time.sleep(0.5)

    def kill(self) -> None:
        """Pull the plug (SIGKILL to this VM's QEMU process only). The overlay is kept."""
        if self.proc is not None and self.proc.poll() is None:
            self._killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait(self, timeout: float = 900) -> VMResult:
        """Wait for the guest to power off (it does after collecting), kill it at the timeout,
        then read the results disk."""
        if self.proc is None:
            raise VMError("VM not started")
        timed_out = False
        remaining = max(0.0, timeout - (time.monotonic() - self._t0))
        try:
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        return self._result(timed_out)

    def results_now(self) -> VMResult:
        """The results of the current boot while the VM keeps running: for VM(poweroff=False) after the
        console said 'K8SSEED-COLLECT: done' (the collector has unmounted the disk by then)."""
        if self.proc is None:
            raise VMError("VM not started")
        results = read_results_disk(self.results_disk, self.results_out)
        return VMResult(name=self.name, boot=self.boots, accel=self.accel or "?",
                        returncode=self.proc.poll(), timed_out=False, killed=False,
                        wall_seconds=time.monotonic() - self._t0, console_path=self.console_path,
                        results_dir=results, overlay=self.overlay, workdir=self.workdir, vm=self)

    def stop(self) -> VMResult:
        """Kill now and return what there is (a resume test's first boot)."""
        self.kill()
        return self._result(False)

    def _result(self, timed_out: bool) -> VMResult:
        wall = time.monotonic() - self._t0
        with contextlib.suppress(Exception):
            self._stderr.close()
        results = read_results_disk(self.results_disk, self.results_out)
        res = VMResult(name=self.name, boot=self.boots, accel=self.accel or "?",
                       returncode=self.proc.returncode if self.proc else None,
                       timed_out=timed_out, killed=self._killed, wall_seconds=wall,
                       console_path=self.console_path, results_dir=results,
                       overlay=self.overlay, workdir=self.workdir, vm=self)
        self.history.append(res)
        return res

    def cleanup(self) -> None:
        """Kill if running and remove the work directory if this VM made it."""
        self.kill()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def read_results_disk(disk: Path, out: Path) -> Path | None:
    """Copy /k8sseed-results from the ext4 results disk to out/ (debugfs, no mount)."""
    if not disk.exists():
        return None
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    p = subprocess.run(["debugfs", "-R", f"rdump /{RESULTS_DIR_IN_DISK} {out}", str(disk)],
                       capture_output=True, text=True)
    d = out / RESULTS_DIR_IN_DISK
    if not d.is_dir():
        (out / "debugfs.err").write_text(p.stderr)
        return None
    return d


def boot(image: Image | os.PathLike | str, seed_iso: os.PathLike | str | None, mac: str, *,
         memory_mb: int = DEFAULT_MEMORY_MB, timeout: float = 900, extra_net: Iterable | None = None,
         workdir: os.PathLike | str | None = None, name: str = "vm",
         collect_timeout: int | None = None, **kw) -> VMResult:
    """Boot once and return the collected results. The VM (with its overlay) stays available as
    result.vm, so `result.vm.start(); result.vm.wait()` boots the same disk again."""
    if collect_timeout is None:
        # leave the collector time to collect and power off before we pull the plug
        collect_timeout = int(max(60, timeout - 120))
    vm = VM(image, seed_iso, mac, memory_mb=memory_mb, extra_net=extra_net, workdir=workdir,
            name=name, collect_timeout=collect_timeout, **kw)
    vm.start()
    return vm.wait(timeout)


# --------------------------------------------------------------------------------------------
# helpers


def make_seed_iso(out: os.PathLike | str, user_data: str, meta_data: str,
                  network_config: str | None = None) -> Path:
    """A NoCloud seed ISO (label cidata) made with xorriso or genisoimage (for tests that do not
    use the product's writer)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="k8sseed-seed-") as td:
        files = {"user-data": user_data, "meta-data": meta_data}
        if network_config is not None:
            files["network-config"] = network_config
        for n, c in files.items():
            (Path(td) / n).write_text(c)
        names = [str(Path(td) / n) for n in files]
        if shutil.which("xorriso"):
            cmd = ["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-R", "-o", str(out), *names]
        elif shutil.which("genisoimage"):
            cmd = ["genisoimage", "-quiet", "-V", "cidata", "-J", "-r", "-o", str(out), *names]
        else:
            raise VMError("neither xorriso nor genisoimage is installed")
        _run(cmd)
    return out


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise VMError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")


def _shquote(s: str) -> str:
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def sha256_file(path: os.PathLike | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
