"""A small HTTP/1.1 server on an asyncio Protocol: keep-alive, bounded heads and bodies, files sent in chunks
under the transport's flow control.

One event loop serves every connection (no thread per request, no coroutine per request either: a request is
parsed and answered inside data_received), with a large listen backlog so that a rack powering on at once
queues in the kernel instead of being refused.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_SECONDS = 30.0
CHUNK = 256 * 1024
SMALL_FILE = 128 * 1024  # seed files: sent with their head in one write; ISOs are streamed
BACKLOG = 4096
REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 206: "Partial Content", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Content Too Large",
           416: "Range Not Satisfiable", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    target: str
    path: str  # percent-decoded, without the query
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: str
    version: str = "HTTP/1.1"

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it unless told `keep-alive` (a
        1.0 client such as ab or an older BMC waits for the close to know the answer has ended)."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens


@dataclass
class FileBody:
    """A byte range of an open file; the server closes fd once sent (or the connection is lost)."""

    fd: int
    offset: int
    length: int


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: FileBody | None = None

    @property
    def length(self) -> int:
        return self.file.length if self.file else len(self.body)


Handler = Callable[[Request], Response]
ErrorLog = Callable[[str, str, int, str], None]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def client_address(peer: object) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else "unknown"
    return host[7:] if isinstance(host, str) and host.startswith("::ffff:") else str(host)


def parse_head(head: bytes, client: str) -> tuple[Request, int]:
    """The request line and headers; returns the request (body empty) and the body length to read."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadRequest(501, "chunked request bodies are not supported")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequest(400, "bad Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    if not target.startswith("/"):
        raise BadRequest(400, "request target must be an absolute path")
    raw_path = target.split("?", 1)[0]
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError as exc:
        raise BadRequest(400, "bad percent-encoding") from exc
    return Request(method, target, path, headers, b"", client, version), length


def head_bytes(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}",
             f"Content-Length: {response.length}", f"Content-Type: {response.content_type}",
             "Cache-Control: no-store", "X-Content-Type-Options: nosniff",
             "Connection: keep-alive" if keep_alive else "Connection: close"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, on_error: ErrorLog) -> None:
        self.handler = handler
        self.on_error = on_error
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.client = "unknown"
        self.sending: FileBody | None = None  # a file still being written
        self.close_after_send = False
        self.paused = False
        self.continued = False  # 100 Continue sent for the request in the buffer
        self.last_activity = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None

    # --- asyncio callbacks -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)
        self.client = client_address(transport.get_extra_info("peername"))
        self.idle_timer = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.buffer += data
        self._process()

    def pause_writing(self) -> None:
        # The client reads slower than we answer: stop reading its requests too, so nothing piles up here.
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resume_reading()
        if self._pump():
            self._process()  # requests that arrived behind the file

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sending is not None:
            os.close(self.sending.fd)
            self.sending = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.transport = None

    # --- requests ----------------------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self.transport is None:
            return
        quiet = time.monotonic() - self.last_activity
        if quiet >= IDLE_SECONDS and self.sending is None:
            self.transport.close()
        else:
            self.idle_timer = asyncio.get_running_loop().call_later(max(1.0, IDLE_SECONDS - quiet), self._check_idle)

    def _process(self) -> None:
        while self.transport is not None and self.sending is None and not self.close_after_send and not self.paused:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail(431, "request head too large", bytes(self.buffer[:200]))
                return
            if end > MAX_HEAD:
                self._fail(431, "request head too large", bytes(self.buffer[:200]))
                return
            head = bytes(self.buffer[:end])
            try:
                request, length = parse_head(head, self.client)
            except BadRequest as exc:
                self._fail(exc.status, str(exc), head)
                return
            if len(self.buffer) < end + 4 + length:
                if length and not self.continued and request.headers.get("expect", "").lower() == "100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.continued = True
                return
            request.body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.continued = False
            response = self.handler(request)
            self._respond(response, request.keep_alive, request.method == "HEAD")

    def _fail(self, status: int, reason: str, head: bytes) -> None:
        self.on_error(self.client, head.split(b"\r\n", 1)[0].decode("latin-1"), status, reason)
        self._respond(Response(status, f"{reason}\n".encode()), False, False)

    def _respond(self, response: Response, keep_alive: bool, head_only: bool) -> None:
        assert self.transport is not None
        self.close_after_send = not keep_alive
        head = head_bytes(response, keep_alive)
        if response.file is None or head_only:
            if response.file is not None:
                os.close(response.file.fd)
            self.transport.write(head if head_only else head + response.body)
            self._finish()
            return
        if response.file.length <= SMALL_FILE:  # a seed file: head and body in one write, no streaming state
            body = os.pread(response.file.fd, response.file.length, response.file.offset)
            os.close(response.file.fd)
            if len(body) != response.file.length:  # the file shrank under us: never send it short
                self.transport.abort()
                return
            self.transport.write(head + body)
            self._finish()
            return
        self.transport.write(head)
        self.sending = FileBody(response.file.fd, response.file.offset, response.file.length)
        self._pump()

    def _pump(self) -> bool:
        """Write the file in chunks while the transport takes them (resume_writing calls back); True once sent."""
        sending = self.sending
        if sending is None or self.transport is None:
            return False
        while sending.length > 0 and not self.paused:
            chunk = os.pread(sending.fd, min(CHUNK, sending.length), sending.offset)
            if not chunk:  # the file shrank under us: cut the connection rather than send it short
                self.transport.abort()
                return False
            self.transport.write(chunk)
            sending.offset += len(chunk)
            sending.length -= len(chunk)
        if sending.length:
            return False
        os.close(sending.fd)
        self.sending = None
        self._finish()
        return True

    def _finish(self) -> None:
        if self.close_after_send and self.transport is not None:
            self.transport.close()


async def start(host: str, port: int, handler: Handler, on_error: ErrorLog) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(handler, on_error), host, port, backlog=BACKLOG,
                                    reuse_address=True)
