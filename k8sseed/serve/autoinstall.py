"""The Ubuntu installer's autoinstall seed for a node: its k8sseed seed, wrapped for subiquity.

A node with `install: ubuntu-autoinstall` PXE-boots the Ubuntu live-server installer, whose cloud-init reads
`/autoinstall/by-mac/<mac>/user-data` from this server. That user-data is a cloud-config whose only key is
`autoinstall:` (what subiquity reads). Inside it:

- `user-data`: the node's own k8sseed cloud-config, parsed from OUT/<node>/user-data and placed as data.
  subiquity hands it to the installed system's cloud-init, which runs it on the first boot from disk, so the
  node bootstraps exactly as from its seed ISO. Since `user-data` is given, there is no `identity` section:
  subiquity creates the users the cloud-config names and no installer user.
- `network`: the node's network-config (netplan v2, matched by MAC). subiquity applies it during the install
  and writes it into the installed system, and turns cloud-init's own network configuration off there, so
  the installer's network config is the node's static one, not the DHCP lease it booted with.
- `storage`: the layout and the disk match of seedServer.autoinstall.storage.
- `early-commands` / `late-commands` / `error-commands`: a signed status report (phase `install`, started /
  done / failed) to this server's /status/<node>; the server marks the node installed on `done`, and its
  iPXE script then boots the local disk instead of the installer.
"""

from __future__ import annotations

from typing import Any

import yaml

from k8sseed.profile.model import Autoinstall
from k8sseed.yamltext import dump

INSTALL_PHASE = "install"
INSTALL_METHOD = "ubuntu-autoinstall"

# Run by the installer (list commands are executed without a shell) as: python3 -c REPORTER URL NODE KEY STATE.
# It signs the report the way the node's k8sseed-report does (k8sseed.serve.reports). `done` must arrive, or
# the node would boot the installer again: it is retried for a minute while the server is unreachable or
# failing, and a refusal (4xx) or no answer fails the installation visibly. `started`/`failed` are one try.
REPORTER = """\
import hmac, json, os, sys, time, urllib.error, urllib.request
url, node, key, state = sys.argv[1:5]
tries = 30 if state == "done" else 1
for attempt in range(tries):
    body = json.dumps({"node": node, "phase": "install", "state": state, "time": time.time(),
                       "nonce": os.urandom(12).hex()}, sort_keys=True).encode()
    signature = "v1=" + hmac.digest(bytes.fromhex(key), body, "sha256").hex()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                 "X-K8sseed-Signature": signature})
    try:
        urllib.request.urlopen(request, timeout=10).close()
        sys.exit(0)
    except urllib.error.HTTPError as exc:
        print("k8sseed: install report to", url, "refused:", exc.code, exc.reason, file=sys.stderr)
        if exc.code < 500:
            break
    except OSError as exc:
        print("k8sseed: install report to", url, "failed:", exc, file=sys.stderr)
    if attempt + 1 < tries:
        time.sleep(2)
sys.exit(1 if state == "done" else 0)
"""


class NotACloudConfig(ValueError):
    """The node's user-data is not a cloud-config mapping (k8sseed always writes one)."""


def _mapping(text: bytes, what: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise NotACloudConfig(f"{what} is not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise NotACloudConfig(f"{what} is not a YAML mapping")
    return data


def report_command(status_url: str, node: str, key_hex: str, state: str) -> list[str]:
    return ["python3", "-c", REPORTER, status_url, node, key_hex, state]


def installer_config(cloud_config: dict[str, Any], network: dict[str, Any], installer: Autoinstall,
                     node: str, status_url: str, key_hex: str, apt_mirror: str | None) -> dict[str, Any]:
    """The autoinstall document for one node, as data."""
    section: dict[str, Any] = {
        "version": 1,
        "early-commands": [report_command(status_url, node, key_hex, "started")],
        "network": network,
        "storage": {"layout": {"name": installer.layout, "match": dict(installer.disk_match)}},
        "ssh": {"install-server": True, "allow-pw": False},
    }
    if apt_mirror:
        section["apt"] = {"primary": [{"arches": ["default"], "uri": apt_mirror}]}
    section["user-data"] = cloud_config
    section["late-commands"] = [report_command(status_url, node, key_hex, "done")]
    section["error-commands"] = [report_command(status_url, node, key_hex, "failed")]
    return {"autoinstall": section}


def installer_user_data(user_data: bytes, network_config: bytes, installer: Autoinstall, node: str,
                        status_url: str, key_hex: str, apt_mirror: str | None = None) -> bytes:
    """The installer's user-data: the node's seed (user-data and network-config, parsed) wrapped as data."""
    if not user_data.startswith(b"#cloud-config"):
        raise NotACloudConfig(f"{node}/user-data is not a #cloud-config document")
    cloud_config = _mapping(user_data, f"{node}/user-data")
    network = _mapping(network_config, f"{node}/network-config")
    data = installer_config(cloud_config, network, installer, node, status_url, key_hex, apt_mirror)
    return ("#cloud-config\n" + dump(data)).encode("utf-8")
