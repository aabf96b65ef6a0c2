"""The live status page in a real browser (headless Chromium over the DevTools pipe): a phase a node reports
shows up on the open page without a reload, and the page loads nothing from anywhere but the server."""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_tool
from serve_support import Server, make_lab

from k8sseed.secrets import read_secret
from k8sseed.serve.reports import signed_body


class DevTools:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, browser: str, profile_dir: Path, url: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        # No network but loopback: every host name fails to resolve, background fetches are off.
        self.proc = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile_dir}", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--window-size=1200,700", url],
            preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._next_id += 1
        message: dict = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)
        raise AssertionError(f"{method}: no answer from Chromium within {timeout}s")

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise AssertionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _post_report(server: Server, secret: Path, node: str, phase: str, state: str) -> None:
    key = read_secret(secret).status_key(node)
    body, signature = signed_body(key, node, phase, state, time.time(), pysecrets.token_hex(16))
    status, _, _ = server.request("POST", f"/status/{node}", body=body,
                                  headers={"Content-Type": "application/json", "X-K8sseed-Signature": signature})
    assert status == 204


@pytest.mark.slow
def test_status_page_shows_a_reported_phase_live(tmp_path: Path):
    browser = require_tool("chromium")
    lab = make_lab(tmp_path)
    with Server(lab) as server:
        _post_report(server, lab.secret, "cp-1", "runtime", "done")
        chrome = DevTools(browser, tmp_path / "chromium-profile", server.url)
        try:
            targets = chrome.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            session = chrome.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
            chrome.call("Runtime.enable", session=session)

            def row(node: str) -> str:
                result = chrome.call("Runtime.evaluate", {
                    "expression": f"(document.getElementById('node-{node}') || {{innerText: ''}}).innerText"},
                    session=session)
                return result["result"].get("value", "")

            def wait_for(node: str, *words: str) -> str:
                deadline = time.monotonic() + 30
                text = ""
                while time.monotonic() < deadline:
                    text = row(node)
                    if all(w in text for w in words):
                        return text
                    time.sleep(0.2)
                raise AssertionError(f"row {node} never showed {words}; last: {text!r}")

            wait_for("cp-1", "runtime", "done")
            wait_for("worker-2", "no report yet")
            marker = chrome.call("Runtime.evaluate", {"expression": "window.__k8sseed_same_page = 1"}, session=session)
            assert marker["result"]["value"] == 1
            _post_report(server, lab.secret, "worker-2", "kubeadm", "started")
            _post_report(server, lab.secret, "cp-1", "kubernetes-packages", "started")
            wait_for("worker-2", "kubeadm", "started")
            wait_for("cp-1", "kubernetes-packages", "started")
            same = chrome.call("Runtime.evaluate", {"expression": "window.__k8sseed_same_page"}, session=session)
            assert same["result"].get("value") == 1, "the page updated in place, without a reload"
            shot = chrome.call("Page.captureScreenshot", {"format": "png"}, session=session)
            png = base64.b64decode(shot["data"])
            (tmp_path / "status-page.png").write_bytes(png)
            assert png.startswith(b"\x89PNG") and len(png) > 5000
            resources = chrome.call("Runtime.evaluate", {
                "expression": "JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))",
                "returnByValue": True}, session=session)
            loaded = json.loads(resources["result"]["value"])
            assert loaded and all(url.startswith(server.url) for url in loaded), loaded
        finally:
            chrome.close()
        assert "client=127.0.0.1 GET /status.json 200" in server.log()
        assert "GET / 200" in server.log()
