"""Run the sushy-tools Redfish emulator (its fake driver) on 127.0.0.1 and a free port, for tests/test_attach.py.

Usage: python redfish_emulator.py SETTINGS.json. Prints "listening on PORT" once it serves.

The emulator is sushy-tools' own Flask app, configured from a config file as `sushy-emulator --config` does.
Around it sits a small WSGI layer of the test's own:
- it records every request that changes something (method, path, JSON body) in a JSON-lines file;
- it keeps BootSourceOverrideEnabled as a BMC does (the fake driver ignores it and always shows Continuous);
- it plays the vendor quirks the test asks for (see QUIRKS), so that k8sseed's handling of each can be tested.
"""

from __future__ import annotations

import io
import json
import re
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

QUIRKS = {
    "refuse-insert-while-inserted": "InsertMedia answers 400 while the slot holds an image (iDRAC VRM0021 and others)",
    "busy-after-eject": "the first InsertMedia after an EjectMedia answers 500 (Dell: eject still in progress)",
    "refuse-unchanged-enabled": "a PATCH with BootSourceOverrideEnabled equal to the current value answers 400",
    "no-boot-mode": "BootSourceOverrideMode is neither shown nor accepted (HPE Gen9)",
    "mode-reset-without-mode": "a boot target without BootSourceOverrideMode resets the mode to Legacy (Supermicro)",
    "kvm-only-slot": "the slot named Kvm has no InsertMedia action (KVM-only media)",
    "media-under-manager": "the system has no VirtualMedia link; its manager has (older BMCs)",
    "power-stuck": "ComputerSystem.Reset is accepted but the power state never changes",
    "require-transfer-protocol": "InsertMedia without TransferProtocolType answers 400 ActionParameterMissing (iDRAC)",
    "refuse-inserted-fields": "InsertMedia with Inserted or WriteProtected answers 400 (Supermicro X11/X12)",
    "eject-needs-body": "EjectMedia without a JSON body answers 415 (HPE iLO)",
    "supermicro": "the system says Manufacturer Supermicro and offers a UsbCd boot target",
}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _redfish_error(status: str, message: str, code: str = "Base.1.0.GeneralError",
                   related: tuple[str, ...] = ()) -> tuple[str, bytes]:
    body = {"error": {"code": code, "message": message,
                      "@Message.ExtendedInfo": [{"MessageId": code, "Message": message, "Severity": "Critical",
                                                 "RelatedProperties": list(related)}]}}
    return status, json.dumps(body).encode()


class QuirkLayer:
    def __init__(self, app: Callable[..., Iterable[bytes]], quirks: set[str], log_path: Path,
                 initial_enabled: str) -> None:
        unknown = quirks - set(QUIRKS)
        if unknown:
            raise SystemExit(f"unknown quirks: {sorted(unknown)}")
        self.app, self.quirks, self.log_path = app, quirks, log_path
        self.inserted: set[str] = set()
        self.busy_after_eject = False
        self.enabled: dict[str, str] = {}
        self.initial_enabled = initial_enabled
        self.lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        body = b""
        if method in ("POST", "PATCH", "PUT", "DELETE"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            with self.lock, self.log_path.open("a") as log:
                log.write(json.dumps({"method": method, "path": path, "body": data}) + "\n")
            refusal, data = self._before(method, path, data)
            if refusal:
                status, payload = refusal
                start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
                return [payload]
            if data is not None:
                body = json.dumps(data).encode()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        status_holder: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            status_holder[:] = [status, headers]
            return lambda _data: None

        chunks = b"".join(self.app(environ, capture))
        status, headers = status_holder
        if status.startswith("2"):
            self._after(method, path, data if method != "GET" else None)
        if method == "GET" and status.startswith("200"):
            chunks = self._rewrite(path, chunks)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(chunks))))
        start_response(status, headers)
        return [chunks]

    def _before(self, method: str, path: str, data: Any) -> tuple[tuple[str, bytes] | None, Any]:
        slot = path.split("/Actions/")[0]
        if path.endswith("/VirtualMedia.InsertMedia"):
            if "refuse-insert-while-inserted" in self.quirks and slot in self.inserted:
                return _redfish_error("400 Bad Request", "Virtual Media is already in use"), data
            body_fields = data if isinstance(data, dict) else {}
            if "require-transfer-protocol" in self.quirks and "TransferProtocolType" not in body_fields:
                return _redfish_error("400 Bad Request", "The action requires the parameter TransferProtocolType",
                                      "Base.1.8.ActionParameterMissing", ("#/TransferProtocolType",)), data
            if "refuse-inserted-fields" in self.quirks and {"Inserted", "WriteProtected"} & set(body_fields):
                return _redfish_error("400 Bad Request", "Inserted and WriteProtected are not supported"), data
            if "busy-after-eject" in self.quirks and self.busy_after_eject:
                self.busy_after_eject = False
                return _redfish_error("500 Internal Server Error", "eject still in progress, retry"), data
        if path.endswith("/VirtualMedia.EjectMedia") and "eject-needs-body" in self.quirks and data is None:
            return _redfish_error("415 Unsupported Media Type", "a JSON body is required"), data
        if path.endswith("/ComputerSystem.Reset") and "power-stuck" in self.quirks:
            return ("204 No Content", b""), data
        if method == "PATCH" and isinstance(data, dict) and isinstance(data.get("Boot"), dict):
            boot = data["Boot"]
            if "no-boot-mode" in self.quirks and "BootSourceOverrideMode" in boot:
                return _redfish_error("400 Bad Request", "BootSourceOverrideMode is not supported"), data
            current = self.enabled.get(path, self.initial_enabled)
            if ("refuse-unchanged-enabled" in self.quirks
                    and boot.get("BootSourceOverrideEnabled") == current):
                return _redfish_error("400 Bad Request", "BootSourceOverrideEnabled is already " + current), data
            if ("mode-reset-without-mode" in self.quirks and "BootSourceOverrideTarget" in boot
                    and "BootSourceOverrideMode" not in boot):
                boot["BootSourceOverrideMode"] = "Legacy"
            if "BootSourceOverrideEnabled" in boot and "BootSourceOverrideTarget" not in boot \
                    and "BootSourceOverrideMode" not in boot:
                # The fake driver refuses a PATCH without a target or a mode; a BMC takes Enabled alone.
                with self.lock:
                    self.enabled[path] = boot["BootSourceOverrideEnabled"]
                return ("204 No Content", b""), data
        return None, data

    def _after(self, method: str, path: str, data: Any) -> None:
        slot = path.split("/Actions/")[0]
        with self.lock:
            if path.endswith("/VirtualMedia.InsertMedia"):
                self.inserted.add(slot)
            elif path.endswith("/VirtualMedia.EjectMedia"):
                self.inserted.discard(slot)
                self.busy_after_eject = True
            elif method == "PATCH" and isinstance(data, dict) and isinstance(data.get("Boot"), dict):
                enabled = data["Boot"].get("BootSourceOverrideEnabled")
                if enabled:
                    self.enabled[path] = enabled

    def _rewrite(self, path: str, chunks: bytes) -> bytes:
        try:
            doc = json.loads(chunks)
        except ValueError:
            return chunks
        if not isinstance(doc, dict):
            return chunks
        if re.fullmatch(r"/redfish/v1/Systems/[^/]+", path):
            boot = doc.get("Boot")
            if isinstance(boot, dict):
                boot["BootSourceOverrideEnabled"] = self.enabled.get(path, self.initial_enabled)
                if "no-boot-mode" in self.quirks:
                    boot.pop("BootSourceOverrideMode", None)
            if "media-under-manager" in self.quirks:
                doc.pop("VirtualMedia", None)
            if "supermicro" in self.quirks and isinstance(boot, dict):
                doc["Manufacturer"] = "Supermicro"
                boot["BootSourceOverrideTarget@Redfish.AllowableValues"] = [
                    *boot.get("BootSourceOverrideTarget@Redfish.AllowableValues", []), "UsbCd"]
        if "kvm-only-slot" in self.quirks and re.fullmatch(r"/redfish/v1/Systems/[^/]+/VirtualMedia/Kvm", path):
            doc.get("Actions", {}).pop("#VirtualMedia.InsertMedia", None)
        return json.dumps(doc).encode()


def main() -> None:
    settings = json.loads(Path(sys.argv[1]).read_text())
    from sushy_tools.emulator import main as emulator
    from werkzeug.serving import make_server

    app = emulator.app
    app.configure(config_file=settings["config"])
    app.wsgi_app = QuirkLayer(app.wsgi_app, set(settings.get("quirks", [])), Path(settings["requestLog"]),
                              settings.get("initialEnabled", "Disabled"))
    context = None
    if settings.get("tls"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(settings["tls"]["cert"], settings["tls"]["key"])
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
