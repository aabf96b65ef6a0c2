"""The sushy-tools Redfish emulator as a real process on loopback for the attach tests: own port, own state
directory, own temp directory (where it keeps the ISOs it fetched), stopped by PID."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from netns_support import stop_process

HERE = Path(__file__).resolve().parent
SYSTEM_UUID = "4c4c4544-0000-4000-8000-00000000c001"
OTHER_UUID = "4c4c4544-0000-4000-8000-00000000c002"


def fake_systems(mac: str, power_state: str = "Off") -> list[dict[str, Any]]:
    """Two machines behind one BMC service: the node's (with its MAC) and another one."""
    return [
        {"uuid": SYSTEM_UUID, "name": "rack1-u07", "power_state": power_state,
         "nics": [{"mac": "52:54:00:99:00:01", "ip": "192.0.2.7"}, {"mac": mac, "ip": "192.0.2.8"}]},
        {"uuid": OTHER_UUID, "name": "rack1-u08", "power_state": "On",
         "nics": [{"mac": "52:54:00:99:00:02", "ip": "192.0.2.9"}]},
    ]


class Emulator:
    def __init__(self, directory: Path, systems: list[dict[str, Any]], *, quirks: tuple[str, ...] = (),
                 auth_file: Path | None = None, tls: tuple[Path, Path] | None = None,
                 vmedia_devices: dict[str, Any] | None = None, initial_enabled: str = "Disabled") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.request_log = directory / "requests.jsonl"
        self.request_log.write_text("")
        self.tmp = directory / "tmp"
        self.tmp.mkdir(exist_ok=True)
        config = {"SUSHY_EMULATOR_FAKE_DRIVER": True, "SUSHY_EMULATOR_FAKE_SYSTEMS": systems,
                  "SUSHY_EMULATOR_STATE_DIR": str(directory / "state"),
                  "SUSHY_EMULATOR_LISTEN_IP": "127.0.0.1"}
        if auth_file is not None:
            config["SUSHY_EMULATOR_AUTH_FILE"] = str(auth_file)
        if vmedia_devices is not None:
            config["SUSHY_EMULATOR_VMEDIA_DEVICES"] = vmedia_devices
        config_path = directory / "emulator.conf"
        # The emulator's config file is Python (Flask's from_pyfile): one assignment per setting, values as reprs.
        config_path.write_text("".join(f"{key} = {value!r}\n" for key, value in config.items()))
        settings = {"config": str(config_path), "requestLog": str(self.request_log), "quirks": list(quirks),
                    "initialEnabled": initial_enabled}
        if tls is not None:
            settings["tls"] = {"cert": str(tls[0]), "key": str(tls[1])}
        settings_path = directory / "settings.json"
        settings_path.write_text(json.dumps(settings))
        self.log_path = directory / f"emulator-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "redfish_emulator.py"), str(settings_path)],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env={**os.environ, "TMPDIR": str(self.tmp)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError(f"the Redfish emulator did not start:\n{self.log_path.read_text()}")
        self.port = int(line.split()[-1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.basic_auth: tuple[str, str] | None = None

    def requests(self) -> list[dict[str, Any]]:
        """The changing requests the emulator received, in order."""
        return [json.loads(line) for line in self.request_log.read_text().splitlines()]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A request straight to the emulator (plain HTTP, no auth): set up a state or read one back."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.basic_auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        context = ssl._create_unverified_context() if self.url.startswith("https:") else None  # reading back only
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def system(self, uuid: str = SYSTEM_UUID) -> dict[str, Any]:
        return self.call("GET", f"/redfish/v1/Systems/{uuid}")

    def slot(self, name: str = "Cd", uuid: str = SYSTEM_UUID) -> dict[str, Any]:
        return self.call("GET", f"/redfish/v1/Systems/{uuid}/VirtualMedia/{name}")

    def fetched_isos(self) -> list[Path]:
        """The ISOs the emulator downloaded on InsertMedia (into its TMPDIR)."""
        return sorted(p for p in self.tmp.rglob("*.iso") if p.is_file())

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
