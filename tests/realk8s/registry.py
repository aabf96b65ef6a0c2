"""A real container registry (Debian's docker-registry, distribution 2.8) with TLS from a throwaway test CA,
serving the VM proof's images (tests/realk8s/images.py pushes them).

    tls = make_test_ca(tmp / "tls", sans=["127.0.0.1", "10.0.2.2"])
    registry = start_registry(tmp / "storage", tls, listen="127.0.0.1")
    ... skopeo --dest-cert-dir tls.cert_dir ...  registry.address == "127.0.0.1:PORT"
    stop_registry(registry.process.pid)

The certificate names every address the clients use (`sans`), which need not be the listening one: a QEMU
guest reaches the host's 127.0.0.1 as 10.0.2.2. Keys never leave the temp folder the caller gives.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DOCKER_REGISTRY = "/usr/bin/docker-registry"


class RegistryError(Exception):
    """The registry did not start, or a certificate could not be made."""


@dataclass(frozen=True)
class TestCA:
    """A CA and one server certificate it signed; cert_dir holds only ca.crt (skopeo's --cert-dir, Docker's
    /etc/docker/certs.d/HOST:PORT/)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    cert_dir: Path
    sans: tuple[str, ...]


def _san_list(sans: Iterable[str]) -> str:
    entries = []
    for name in sans:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def make_test_ca(folder: Path, sans: Iterable[str] = ("127.0.0.1",), days: int = 7) -> TestCA:
    """An ECDSA P-256 CA and a server certificate for `sans` (IP addresses or DNS names), made with openssl."""
    sans = tuple(sans)
    if not sans:
        raise RegistryError("the server certificate needs at least one subject alternative name")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    ext.write_text(f"subjectAltName={_san_list(sans)}\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", str(days),
         "-subj", "/CN=k8sseed test registry CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={sans[0]}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-days", str(days), "-out", cert, "-extfile", ext],
    ]
    for step in steps:
        out = subprocess.run([str(arg) for arg in step], capture_output=True, text=True)
        if out.returncode != 0:
            raise RegistryError(f"{' '.join(map(str, step[:3]))} failed: {out.stderr.strip()}")
    cert_dir = folder / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(ca_cert.read_bytes())
    return TestCA(ca_cert, ca_key, cert, key, cert_dir, sans)


@dataclass(frozen=True)
class Registry:
    process: subprocess.Popen[bytes]
    address: str  # HOST:PORT it listens on
    url: str  # https://HOST:PORT
    config: Path
    log: Path


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def registry_config(storage: Path, tls: TestCA, address: str) -> dict[str, object]:
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address, "tls": {"certificate": str(tls.server_cert), "key": str(tls.server_key)},
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }


def start_registry(storage: Path, tls: TestCA, listen: str = "127.0.0.1", port: int = 0,
                   timeout: float = 20.0, netns: str | None = None) -> Registry:
    """docker-registry serving `storage` over TLS on listen:port (a free port when 0; 5000 in a netns), ready
    when this returns: /v2/ answers, or in the network namespace `netns` (`ip netns add`), its log says it
    listens. Stop it with stop_registry(registry.process.pid)."""
    if not Path(DOCKER_REGISTRY).is_file():
        raise RegistryError(f"{DOCKER_REGISTRY} is missing: apt-get install docker-registry (make e2e-deps)")
    storage.mkdir(parents=True, exist_ok=True)
    port = port or (5000 if netns else free_port(listen))
    host = f"[{listen}]" if ":" in listen else listen
    address = f"{host}:{port}"
    config = storage.parent / f"registry-{netns or 'host'}-{port}.yml"
    config.write_text(json.dumps(registry_config(storage, tls, address), indent=2) + "\n")  # JSON is YAML
    log = config.with_suffix(".log")
    inside = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []  # nsenter execs: the PID is the registry's
    with log.open("wb") as sink:
        process = subprocess.Popen([*inside, DOCKER_REGISTRY, "serve", str(config)], stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    registry = Registry(process, address, f"https://{address}", config, log)
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    context.check_hostname = listen in tls.sans
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RegistryError(f"docker-registry exited {process.returncode}: {log.read_text()[-2000:]}")
        if netns and f"listening on {address}, tls" in log.read_text():
            return registry
        if not netns and _answers(registry.url, context):
            return registry
        if time.monotonic() > deadline:
            stop_registry(process.pid)
            raise RegistryError(f"docker-registry did not answer on {registry.url} in {timeout:.0f} s")
        time.sleep(0.1)


def _answers(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", context=context, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stop_registry(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM to the registry started by start_registry (its own process group), SIGKILL after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: wait for it to vanish
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            done = 0
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Serve a folder of pushed images until SIGINT or SIGTERM, with a test CA made in --tls if it has none."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="docker-registry with TLS from a test CA (tests/realk8s)")
    parser.add_argument("--storage", type=Path, required=True, help="the registry's blobs and manifests")
    parser.add_argument("--tls", type=Path, required=True, help="ca.crt, server.crt, server.key (made if absent)")
    parser.add_argument("--san", action="append", help="an address clients use (repeatable; default 127.0.0.1)")
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    folder: Path = args.tls
    if (folder / "server.crt").is_file():
        tls = TestCA(folder / "ca.crt", folder / "ca.key", folder / "server.crt", folder / "server.key",
                     folder / "certs.d", tuple(args.san or ()))
    else:
        tls = make_test_ca(folder, args.san or ["127.0.0.1"])
    try:
        registry = start_registry(args.storage, tls, args.listen, args.port)
    except RegistryError as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 1
    print(f"registry: {registry.url} (CA {tls.ca_cert}, log {registry.log}); SIGINT or SIGTERM stops it", flush=True)
    stop = {"asked": False}

    def on_signal(signo: int, frame: object) -> None:
        stop["asked"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["asked"] and registry.process.poll() is None:
        time.sleep(0.2)
    stop_registry(registry.process.pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
