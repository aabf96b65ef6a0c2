"""A small HTTP/1.1 server on asyncio streams: keep-alive, bounded heads and bodies, files sent in chunks.

One event loop serves every connection (no thread per request), with a large listen backlog so that a rack
powering on at once queues in the kernel instead of being refused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_SECONDS = 30.0
CHUNK = 256 * 1024
BACKLOG = 4096
REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           410: "Gone", 411: "Length Required", 413: "Content Too Large", 416: "Range Not Satisfiable",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    target: str
    path: str  # percent-decoded, without the query
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: str


@dataclass
class FileBody:
    """A byte range of an open file; the server closes fd once sent."""

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


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def client_address(peer: object) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else "unknown"
    return host[7:] if isinstance(host, str) and host.startswith("::ffff:") else str(host)


def parse_head(head: bytes, client: str) -> tuple[Request, int]:
    """The request line and headers; returns the request (body empty) and the body length to read."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # latin-1 decodes anything; kept for clarity
        raise BadRequest(400, "undecodable request") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, _ = parts
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
    path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    return Request(method, target, path, headers, b"", client), length


def _head_bytes(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}",
             f"Content-Length: {response.length}", f"Content-Type: {response.content_type}",
             "Cache-Control: no-store", "X-Content-Type-Options: nosniff",
             "Connection: keep-alive" if keep_alive else "Connection: close"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, response: Response, keep_alive: bool, head_only: bool) -> None:
    head = _head_bytes(response, keep_alive)
    if head_only:
        writer.write(head)
    elif response.file is None:
        writer.write(head + response.body)
    else:
        writer.write(head)
        offset, left = response.file.offset, response.file.length
        while left > 0:
            chunk = os.pread(response.file.fd, min(CHUNK, left), offset)
            if not chunk:  # the file shrank under us: cut the connection rather than send short
                raise ConnectionResetError("file shorter than announced")
            writer.write(chunk)
            offset += len(chunk)
            left -= len(chunk)
            await writer.drain()
    await writer.drain()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler,
                           on_error: Callable[[str, str, int, str], None]) -> None:
    client = client_address(writer.get_extra_info("peername"))
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_SECONDS)
            except asyncio.LimitOverrunError:
                response = Response(431, b"request head too large\n")
                on_error(client, "-", 431, "request head too large")
                await _send(writer, response, False, False)
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            try:
                request, length = parse_head(head, client)
                if length and request.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if length:
                    request.body = await asyncio.wait_for(reader.readexactly(length), IDLE_SECONDS)
            except BadRequest as exc:
                on_error(client, head.split(b"\r\n", 1)[0].decode("latin-1")[:200], exc.status, str(exc))
                await _send(writer, Response(exc.status, f"{exc}\n".encode()), False, False)
                return
            except UnicodeDecodeError:
                on_error(client, head.split(b"\r\n", 1)[0].decode("latin-1")[:200], 400, "bad percent-encoding")
                await _send(writer, Response(400, b"bad percent-encoding\n"), False, False)
                return
            response = await handler(request)
            keep_alive = request.headers.get("connection", "").lower() != "close"
            try:
                await _send(writer, response, keep_alive, request.method == "HEAD")
            finally:
                if response.file is not None:
                    os.close(response.file.fd)
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        return
    finally:
        writer.close()


async def start(host: str, port: int, handler: Handler,
                on_error: Callable[[str, str, int, str], None]) -> asyncio.AbstractServer:
    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, handler, on_error)

    return await asyncio.start_server(connected, host, port, backlog=BACKLOG, limit=MAX_HEAD, reuse_address=True)
