"""The seed server: routes, access control, hand-out-once, status reports and the request log."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8sseed.cluster_identity import mismatch, of_manifest, of_profile
from k8sseed.errors import ProfileError
from k8sseed.pki import derive_pki
from k8sseed.plural import plural
from k8sseed.profile import load_profile
from k8sseed.profile.model import Role
from k8sseed.secrets import ClusterSecret
from k8sseed.serve import http, ipxe
from k8sseed.serve.autoinstall import INSTALL_METHOD, INSTALL_PHASE, NotACloudConfig, installer_user_data
from k8sseed.serve.http import FileBody, Request, Response
from k8sseed.serve.log_writer import LogWriter
from k8sseed.serve.ranges import Unsatisfiable, byte_range
from k8sseed.serve.reports import SIGNATURE_HEADER, ReportRefused, verify
from k8sseed.serve.seeds import SEED_FILES, Generation, NotAnOutput, OutDir, SeedRefused, normalize_mac
from k8sseed.serve.status import StatusBoard
from k8sseed.templating import render_static

IGNITION_FILE = "config.ign"  # /<node>/config.ign and /by-mac/<mac>/config.ign serve OUT/<node>.ign
IGNITION_TYPE = "application/vnd.coreos.ignition+json"

LOG = logging.getLogger("k8sseed.serve")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
HANDED_OUT = "handed-out"
INSTALLED = "installed"  # state_dir/installed/<node>: the Ubuntu installer reported this node installed
AUTOINSTALL_FILES = ("user-data", "meta-data", "vendor-data")
SAVE_DELAY = 0.5
# The page talks to this server only: no external script, style, font or image can load.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class Settings:
    out: Path
    profile: Path
    host: str
    port: int
    state_dir: Path
    base_url: str | None  # the URL nodes reach this server at, for iPXE scripts


class ServeError(Exception):
    """The server cannot start (bad OUT, profile or state directory)."""


def printable(text: str, limit: int = 300) -> str:
    """Client-sent text as it goes into the log: one line, no terminal control characters."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def state_dir_for(out: Path) -> Path:
    """Where the server keeps status and hand-out markers: beside OUT, never in it (a build replaces OUT)."""
    out = out.absolute()
    return out.parent / f"{out.name}.serve-state"


def _clear_mark(state_dir: Path, kind: str, node: str) -> bool:
    try:
        (state_dir / kind / node).unlink()
    except FileNotFoundError:
        return False
    return True


def rearm(state_dir: Path, node: str) -> bool:
    """Let a hand-out-once seed be handed out again; False when it was not handed out."""
    return _clear_mark(state_dir, HANDED_OUT, node)


def reinstall(state_dir: Path, node: str) -> bool:
    """Let an installed node (install: ubuntu-autoinstall) boot the installer again; False when not installed."""
    return _clear_mark(state_dir, INSTALLED, node)


class SeedServer:
    def __init__(self, settings: Settings, secret: ClusterSecret, writer: LogWriter | None = None) -> None:
        self.settings = settings
        self.secret = secret
        self.writer = writer
        self._allowed_cache: dict[str, bool] = {}
        self.out = OutDir(settings.out)
        try:
            self.generation, _ = self.out.current()
        except NotAnOutput as exc:
            raise ServeError(f"{exc}; build it first: k8sseed build PROFILE -o {settings.out}") from exc
        try:
            self.profile = load_profile(settings.profile).profile
        except ProfileError as exc:
            raise ServeError(str(exc)) from exc
        try:
            (settings.state_dir / HANDED_OUT).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(settings.state_dir, 0o700)
        except OSError as exc:
            raise ServeError(f"{settings.state_dir}: cannot create the state directory: {exc.strerror}") from exc
        self.board = StatusBoard(settings.state_dir)
        self.port = settings.port  # the bound port once listening (--listen ...:0 picks one)
        self.page = render_static("status-page.html.j2").encode("utf-8")
        self._save_pending = False
        self._swap_checked = False
        self._check_same_cluster()
        self._index()
        self._check_profile_matches()
        self.preloaded = self.generation.preload()

    # --- what the build and the profile say --------------------------------------------------------------

    def _index(self) -> None:
        p = self.profile
        nodes = self.generation.nodes
        self.by_serial = {n.serial.lower(): n.name for n in p.nodes if n.serial and n.name in nodes}
        self.by_uuid = {n.system_uuid: n.name for n in p.nodes if n.system_uuid and n.name in nodes}
        server = p.seed_server
        if server and server.allowed_networks:
            self.allowed: tuple[Any, ...] = tuple(server.allowed_networks)
        else:
            self.allowed = (*sorted({n.ip.network for n in p.nodes}), *LOOPBACK)
        self._allowed_cache = {}
        self.hand_out_once = bool(server and server.hand_out_once)
        self.keys = {name: self.secret.status_key(name) for name in nodes}
        self.installer_nodes = {n.name for n in p.nodes if n.install == INSTALL_METHOD and n.name in nodes}

    def _cluster_problem(self) -> str | None:
        """Why the profile (with this secret) and OUT are not one cluster with one CA (k8sseed.cluster_identity)."""
        c = self.profile.cluster
        ours = of_profile(self.settings.profile, c.name,
                          derive_pki(self.secret, c.pki_not_before, c.ca_validity_days).ca_cert_hash)
        return mismatch(ours, of_manifest(self.settings.out, self.generation.manifest))

    def _check_same_cluster(self) -> None:
        problem = self._cluster_problem()
        if problem:
            raise ServeError(problem)

    def _check_profile_matches(self) -> None:
        try:
            text = self.settings.profile.read_bytes()
        except OSError:
            return
        built = self.generation.manifest.get("profileSha256")
        if built and built != hashlib.sha256(text).hexdigest():
            LOG.warning("note: %s changed since %s was built; serial, UUID, network and PXE settings come from the "
                        "profile as it is now, the seeds from the last build", self.settings.profile,
                        self.settings.out)

    def _check_secret_matches(self) -> None:
        """After a rebuild: the nodes sign with keys from the secret OUT was built with, or every report fails."""
        problem = self._cluster_problem()
        if problem:
            LOG.error("%s; the nodes' status reports cannot be checked until then", problem)

    def _follow_swaps(self) -> Generation:
        """The generation in OUT now; OUT is looked at once per event-loop turn (one stat for a burst of requests).

        Every request handled in a turn was read after the turn's poll returned, so a request sent after a
        swap completed is answered from the new build: the check is reset at the start of the next turn.
        """
        if self._swap_checked:
            return self.generation
        try:
            asyncio.get_running_loop().call_soon(self._recheck_swaps)
            self._swap_checked = True
        except RuntimeError:  # no event loop (called directly): look every time
            pass
        try:
            generation, changed = self.out.current()
        except NotAnOutput as exc:
            LOG.error("%s; still serving the previous build", exc)
            return self.generation
        if changed:
            self.generation = generation
            try:
                self.profile = load_profile(self.settings.profile).profile
            except ProfileError as exc:
                LOG.error("profile no longer loads, keeping its previous settings: %s", str(exc).splitlines()[0])
            self._index()
            LOG.info("OUT was rebuilt: now serving %s from the new build", plural(len(generation.nodes), "node"))
            self._check_profile_matches()
            self._check_secret_matches()
        return self.generation

    def _recheck_swaps(self) -> None:
        self._swap_checked = False

    def client_allowed(self, client: str) -> bool:
        known = self._allowed_cache.get(client)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(client)
            allowed = any(address.version == net.version and address in net for net in self.allowed)
        except ValueError:
            allowed = False
        if len(self._allowed_cache) > 65536:
            self._allowed_cache.clear()
        self._allowed_cache[client] = allowed
        return allowed

    @property
    def base_url(self) -> str | None:
        if self.settings.base_url:
            return self.settings.base_url
        if self.profile.seed_server and self.profile.seed_server.url:
            url = self.profile.seed_server.url
            return url if url.endswith("/") else url + "/"
        if self.settings.host not in ("", "0.0.0.0", "::"):
            host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
            return f"http://{host}:{self.port}/"
        return None

    # --- request handling ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            response, note = self.route(request)
        except SeedRefused as exc:
            response, note = Response(exc.status, f"{exc}\n".encode()), f"refused: {exc}"
        except ReportRefused as exc:
            response, note = Response(exc.status, f"{exc}\n".encode()), f"report refused: {exc}"
        except Exception as exc:  # a bug: logged, answered, and the server keeps serving
            LOG.exception("internal error on %s %s", request.method, request.target)
            response, note = Response(500, b"internal error\n"), f"internal error: {type(exc).__name__}"
        line = (f"client={request.client} {printable(request.method, 20)} {printable(request.target)} "
                f"{response.status} {response.length}B{' ' + printable(note) if note else ''}")
        warning = response.status >= 400
        if self.writer is not None:
            self.writer.line("WARNING" if warning else "INFO", line)
        else:
            LOG.log(logging.WARNING if warning else logging.INFO, "%s", line)
        return response

    def route(self, request: Request) -> tuple[Response, str]:
        if not self.client_allowed(request.client):
            raise SeedRefused(403, f"client {request.client} is not in the allowed networks "
                                   f"({', '.join(str(n) for n in self.allowed)})")
        parts = [p for p in request.path.split("/") if p] if request.path != "/" else []
        if any(p in (".", "..") or "\x00" in p for p in parts) or "//" in request.path:
            raise SeedRefused(404, "path with '.', '..' or empty segments: refused")
        if request.method == "POST":
            if len(parts) == 2 and parts[0] == "status":
                return self.status_report(parts[1], request)
            raise SeedRefused(405, "POST goes to /status/<node> only")
        if request.method not in ("GET", "HEAD"):
            raise SeedRefused(405, f"method {request.method} not allowed")
        generation = self._follow_swaps()
        if not parts or parts == ["status"]:
            return Response(200, self.page, "text/html; charset=utf-8",
                            [("Content-Security-Policy", PAGE_POLICY)]), ""
        if parts == ["status.json"]:
            return self.status_json(generation), ""
        if len(parts) == 2 and parts[0] == "iso" and parts[1].endswith(".iso"):
            return self.iso(generation, parts[1][:-4], request)
        if parts[0] == "ipxe":
            return self.ipxe(generation, parts[1:]), ""
        if parts[0] == "autoinstall":
            return self.autoinstall_file(generation, parts[1:], request)
        if len(parts) == 3 and parts[0] in ("by-mac", "by-serial", "by-uuid"):
            node = self.lookup(generation, parts[0], parts[1])
            return self.seed_file(generation, node, parts[2], request)
        if len(parts) == 2:
            return self.seed_file(generation, parts[0], parts[1], request)
        raise SeedRefused(404, "no such path")

    def lookup(self, generation: Generation, kind: str, key: str) -> str:
        if kind == "by-mac":
            mac = normalize_mac(key)
            node = generation.by_mac.get(mac) if mac else None
        elif kind == "by-serial":
            node = self.by_serial.get(key.lower())
        else:
            node = self.by_uuid.get(key.lower())
        if node is None:
            raise SeedRefused(404, f"no node with {kind[3:]} '{key}' in this build")
        return node

    def seed_file(self, generation: Generation, node: str, name: str, request: Request) -> tuple[Response, str]:
        if name == "vendor-data":
            if node not in generation.nodes:
                raise SeedRefused(404, f"no node '{node}' in this build")
            # cloud-init asks for it on every HTTP seed and retries a failed fetch: nothing to add, say so at once.
            return Response(200, b""), f"node={node}"
        if name == IGNITION_FILE:
            return self.ignition_config(generation, node, request)
        if name not in SEED_FILES:
            raise SeedRefused(404, f"no seed file '{name}'")
        guarded = name == "user-data"
        if guarded:
            self.check_hand_out(generation, node, request)
        body = generation.seed_bytes(node, name)
        if guarded:
            self.mark_handed_out(generation, node, request)
        content_type = "text/cloud-config; charset=utf-8" if name == "user-data" else "text/yaml; charset=utf-8"
        return Response(200, body, content_type), f"node={node}"

    def ignition_config(self, generation: Generation, node: str, request: Request) -> tuple[Response, str]:
        """OUT/<node>.ign: like user-data, it carries a control plane's CA keys, so hand-out-once guards it."""
        self.check_hand_out(generation, node, request)
        fd, size = generation.open_ignition(node)
        self.mark_handed_out(generation, node, request)
        return Response(200, content_type=IGNITION_TYPE, file=FileBody(fd, 0, size)), f"node={node}"

    def iso(self, generation: Generation, node: str, request: Request) -> tuple[Response, str]:
        self.check_hand_out(generation, node, request)
        fd, size = generation.open_iso(node)
        headers = [("Accept-Ranges", "bytes"), ("Content-Disposition", f'attachment; filename="{node}.iso"')]
        etag = generation.nodes[node].iso_sha256
        if etag:
            headers.append(("ETag", f'"{etag}"'))
        ranged = request.headers.get("range")
        if ranged and "if-range" in request.headers and request.headers["if-range"] != f'"{etag}"':
            ranged = None  # the client's copy is of another build: it gets the whole new ISO (RFC 9110 13.1.5)
        try:
            wanted = byte_range(ranged, size)
        except Unsatisfiable:
            os.close(fd)
            return Response(416, headers=[*headers, ("Content-Range", f"bytes */{size}")]), \
                f"node={node} range not satisfiable"
        self.mark_handed_out(generation, node, request)
        kind = "application/x-iso9660-image"
        if wanted is None:
            return Response(200, content_type=kind, headers=headers, file=FileBody(fd, 0, size)), f"node={node}"
        start, length = wanted
        headers.append(("Content-Range", f"bytes {start}-{start + length - 1}/{size}"))
        return Response(206, content_type=kind, headers=headers, file=FileBody(fd, start, length)), \
            f"node={node} bytes {start}-{start + length - 1}"

    def ipxe(self, generation: Generation, rest: list[str]) -> Response:
        pxe = self.profile.seed_server.pxe if self.profile.seed_server else None
        installer = self.profile.seed_server.autoinstall if self.profile.seed_server else None
        if pxe is None and installer is None:
            raise SeedRefused(404, "the profile has no seedServer.pxe (kernel and initrd to boot)")
        base = self.base_url
        if base is None:
            raise SeedRefused(503, "the server does not know its own URL: set seedServer.url or start it with --url")
        kind = "text/plain; charset=utf-8"
        if rest == ["boot.ipxe"]:
            return Response(200, ipxe.entry_script(base).encode(), kind)
        if len(rest) == 2 and rest[0] == "by-mac" and rest[1].endswith(".ipxe"):
            node = self.lookup(generation, "by-mac", rest[1][:-5])
            seed = generation.nodes[node]
            if installer is not None and node in self.installer_nodes:
                if self.installed(node):
                    return Response(200, ipxe.local_disk_script(node, seed.role, seed.mac or "").encode(), kind)
                script = ipxe.installer_script(base, node, seed.role, seed.mac or "", installer)
                return Response(200, script.encode(), kind)
            if pxe is None:
                raise SeedRefused(404, f"the profile has no seedServer.pxe (kernel and initrd to boot) and node "
                                       f"{node} is not install: {INSTALL_METHOD}")
            if seed.ignition and self.profile.os_family == "flatcar":
                script = ipxe.node_script(base, node, seed.role, seed.mac or "", pxe, None, ignition=True)
                return Response(200, script.encode(), kind)
            network_config = generation.seed_bytes(node, "network-config")
            script = ipxe.node_script(base, node, seed.role, seed.mac or "", pxe, network_config)
            return Response(200, script.encode(), kind)
        raise SeedRefused(404, "no such iPXE script")

    # --- the Ubuntu installer (install: ubuntu-autoinstall) ----------------------------------------------

    def installed(self, node: str) -> bool:
        return (self.settings.state_dir / INSTALLED / node).is_file()

    def autoinstall_file(self, generation: Generation, rest: list[str], request: Request) -> tuple[Response, str]:
        """/autoinstall/<node>/<file> and /autoinstall/by-mac/<mac>/<file>: the installer's NoCloud seed."""
        if len(rest) == 3 and rest[0] == "by-mac":
            node, name = self.lookup(generation, "by-mac", rest[1]), rest[2]
        elif len(rest) == 2:
            node, name = rest
        else:
            raise SeedRefused(404, "no such path")
        if node not in generation.nodes:
            raise SeedRefused(404, f"no node '{node}' in this build")
        if node not in self.installer_nodes:
            raise SeedRefused(404, f"node {node} is not install: {INSTALL_METHOD}: it has no installer seed")
        if name not in AUTOINSTALL_FILES:
            raise SeedRefused(404, f"no installer seed file '{name}' (the installer's network is in its user-data)")
        if name == "vendor-data":
            return Response(200, b""), f"node={node}"
        if name == "meta-data":
            return Response(200, generation.seed_bytes(node, "meta-data"), "text/yaml; charset=utf-8"), \
                f"node={node}"
        installer = self.profile.seed_server.autoinstall if self.profile.seed_server else None
        base = self.base_url
        if installer is None or base is None:
            raise SeedRefused(503, "the server does not know its own URL (the installer reports to it): set "
                                   "seedServer.url or start it with --url")
        self.check_hand_out(generation, node, request)
        try:
            body = installer_user_data(generation.seed_bytes(node, "user-data"),
                                       generation.seed_bytes(node, "network-config"), installer, node,
                                       f"{base}status/{node}", self.keys[node], self.profile.mirrors.apt)
        except NotACloudConfig as exc:
            raise SeedRefused(500, str(exc)) from exc
        self.mark_handed_out(generation, node, request)
        return Response(200, body, "text/cloud-config; charset=utf-8"), f"node={node} autoinstall"

    def mark_installed(self, node: str, client: str) -> None:
        directory = self.settings.state_dir / INSTALLED
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / node).write_text(client + "\n", "utf-8")
        LOG.warning("%s reported installed from %s: its iPXE script now boots the local disk (to install it "
                    "again: k8sseed rearm --reinstall %s %s)", node, client, self.settings.out, node)

    # --- hand out once -----------------------------------------------------------------------------------

    def _guarded(self, generation: Generation, node: str) -> bool:
        seed = generation.nodes.get(node)
        return self.hand_out_once and seed is not None and seed.role == Role.CONTROL_PLANE.value

    def check_hand_out(self, generation: Generation, node: str, request: Request) -> None:
        """A control-plane seed (it holds the cluster CA keys) goes to one client address until re-armed."""
        if not self._guarded(generation, node):
            return
        try:
            holder = (self.settings.state_dir / HANDED_OUT / node).read_text("utf-8").strip()
        except FileNotFoundError:
            return
        if holder != request.client:
            raise SeedRefused(410, f"the seed of control-plane node {node} was already handed out to {holder}; "
                                   f"to hand it out again: k8sseed rearm {self.settings.out} {node}")

    def mark_handed_out(self, generation: Generation, node: str, request: Request) -> None:
        if not self._guarded(generation, node) or request.method == "HEAD":
            return
        path = self.settings.state_dir / HANDED_OUT / node
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(request.client + "\n")
        LOG.warning("control-plane seed of %s handed out to %s: refused to any other client until "
                    "k8sseed rearm", node, request.client)

    # --- status ------------------------------------------------------------------------------------------

    def status_json(self, generation: Generation) -> Response:
        roles = {name: seed.role for name, seed in generation.nodes.items()}
        data = {"cluster": generation.manifest.get("clusterName"), "now": time.time(),
                "nodes": self.board.rows(roles)}
        return Response(200, json.dumps(data).encode(), "application/json")

    def status_report(self, node: str, request: Request) -> tuple[Response, str]:
        self._follow_swaps()
        signature = request.headers.get(SIGNATURE_HEADER)
        report = verify(node, request.body, signature, self.keys.get(node), time.time())
        shown = self.board.accept(report, str(signature).strip(), request.client)
        self._schedule_save()
        if (report.phase, report.state) == (INSTALL_PHASE, "done") and node in self.installer_nodes:
            self.mark_installed(node, request.client)
        if not shown:
            return Response(202), f"status {node}: {report.phase} {report.state} (older than the state shown)"
        return Response(204), f"status {node}: {report.phase} {report.state}"

    def _schedule_save(self) -> None:
        if self._save_pending:
            return
        self._save_pending = True

        def save() -> None:
            self._save_pending = False
            try:
                self.board.save()
            except OSError as exc:
                LOG.error("cannot save the status to %s: %s", self.settings.state_dir, exc.strerror)

        asyncio.get_running_loop().call_later(SAVE_DELAY, save)

    def protocol_error(self, client: str, line: str, status: int, reason: str) -> None:
        LOG.warning("client=%s %s %d refused: %s", client, printable(line), status, reason)


async def run(server: SeedServer, ready: Any = None) -> None:
    listener = await http.start(server.settings.host, server.settings.port, server.handle, server.protocol_error)
    sockets = listener.sockets or []
    port = sockets[0].getsockname()[1] if sockets else server.settings.port
    server.port = port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = server.settings.host
    shown = f"[{host}]" if ":" in host else host
    files, size = server.preloaded
    LOG.info("k8sseed serve: listening on http://%s:%d/ serving %s (%s; %d seed files, %.1f MiB, read in "
             "advance), allowed clients %s, state in %s, event loop %s", shown, port, server.settings.out,
             plural(len(server.generation.nodes), "node"), files, size / 1048576,
             ", ".join(str(n) for n in server.allowed), server.settings.state_dir, type(loop).__module__)
    if ready is not None:
        ready(port)
    async with listener:
        await stop.wait()
    server.board.save()
    LOG.info("k8sseed serve: stopped")
