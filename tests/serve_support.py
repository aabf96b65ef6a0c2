"""A real `k8sseed serve` process on loopback for the tests: its own port, its own state, stopped by PID."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import K8SSEED, REPO, make_secret, run_cli
from netns_support import stop_process

REFERENCE = REPO / "profiles" / "reference.yaml"
SERIALS = {"cp-1": "SN-CP1-0001", "worker-1": "SN-W1-0001"}
UUIDS = {"cp-2": "4C4C4544-0042-3010-8052-B4C04F4E4232"}
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


def lab_profile(directory: Path, seed_server: dict[str, Any] | None = None, timezone: str | None = None,
                name: str = "profile.yaml") -> Path:
    """The reference profile with serial numbers, a system UUID and a seedServer section, built as data."""
    data = yaml.safe_load(REFERENCE.read_text())
    for node in data["nodes"]:
        if node["name"] in SERIALS:
            node["serial"] = SERIALS[node["name"]]
        if node["name"] in UUIDS:
            node["systemUuid"] = UUIDS[node["name"]]
    data["seedServer"] = seed_server if seed_server is not None else {
        "allowedNetworks": ["127.0.0.0/8", "10.20.0.0/24"],
        "pxe": {"kernel": "http://10.20.0.5:8080/boot/vmlinuz", "initrd": "http://10.20.0.5:8080/boot/initrd.img",
                "kernelArgs": ["console=ttyS0,115200"]},
    }
    if timezone:
        data.setdefault("os", {})["timezone"] = timezone
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def build(profile: Path, secret: Path, out: Path) -> None:
    result = run_cli("build", str(profile), "-o", str(out), "--secret", str(secret), "--force")
    assert result.returncode == 0, result.stderr


@dataclass
class Lab:
    dir: Path
    profile: Path
    secret: Path
    out: Path


def built_lab(directory: Path, profile: Path) -> Lab:
    """A fresh secret and OUT (directory/out) built from profile."""
    secret = make_secret(directory)
    out = directory / "out"
    build(profile, secret, out)
    return Lab(directory, profile, secret, out)


def lab_from_data(directory: Path, data: dict[str, Any]) -> Lab:
    """built_lab of a profile given as data (written to directory/profile.yaml)."""
    profile = directory / "profile.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    return built_lab(directory, profile)


def make_lab(directory: Path, seed_server: dict[str, Any] | None = None) -> Lab:
    return built_lab(directory, lab_profile(directory, seed_server))


class Server:
    """`k8sseed serve` on 127.0.0.1 and a free port; the log goes to a file the test reads."""

    def __init__(self, lab: Lab, *extra: str, env: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.log_path = lab.dir / f"serve-{time.monotonic_ns()}.log"
        self.state_dir = lab.dir / "state"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [K8SSEED, "serve", str(lab.out), "--profile", str(lab.profile), "--secret", str(lab.secret),
             "--listen", "127.0.0.1:0", "--state-dir", str(self.state_dir), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        while True:
            match = LISTENING.search(self.log_path.read_text())
            if match:
                self.port = int(match.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"k8sseed serve did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                source: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, **kwargs)

    def raw(self, request_bytes: bytes) -> bytes:
        """Send bytes as they are (no client-side path normalisation) and read the whole answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(request_bytes)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
