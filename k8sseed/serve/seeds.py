"""The seeds under OUT, read safely and following the build's atomic swap of OUT.

Each request looks at OUT's inode: when a build has swapped a new OUT in (renameat2 exchange), the next
request opens the new directory and its manifest; a request never mixes files of two builds, and since a
build only ever swaps in a complete directory, a half-written OUT is never seen. Files are opened relative to
the directory's descriptor with O_NOFOLLOW, by names taken from the manifest only: nothing outside OUT and no
symbolic link is ever served.

Seed files are small and asked for by every node at power-on: a generation keeps the bytes of each seed file
it has read (up to CACHE_BYTES in all), so a repeated request costs no syscall; the server reads the files of
the build it starts with before it listens (preload). The cache belongs to the generation: a swap opens a new
generation with an empty cache, and since a build never changes a swapped-in OUT in place, the cached bytes
are the files' bytes. Refusals are never cached (a request is refused again).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_FILES = ("user-data", "meta-data", "network-config")
MANIFEST = "manifest.json"
_MAC = re.compile(r"[0-9a-f]{2}([:-][0-9a-f]{2}){5}")
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
CACHE_FILE_BYTES = 1024 * 1024  # a seed file larger than this is read from OUT on every request
CACHE_BYTES = 256 * 1024 * 1024  # per generation: ~40 KiB a node, so several thousand nodes fit


class SeedRefused(Exception):
    """A request for something the server will not hand out; status is the HTTP code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class NotAnOutput(Exception):
    """OUT holds no k8sseed manifest (or cannot be read)."""


@dataclass(frozen=True)
class SeedNode:
    name: str
    role: str
    mac: str | None
    iso: str | None  # file name of the ISO relative to OUT
    iso_sha256: str | None = None
    ignition: str | None = None  # file name of the Ignition config relative to OUT (builds with --format ignition)


def normalize_mac(text: str) -> str | None:
    text = text.lower()
    return text.replace("-", ":") if _MAC.fullmatch(text) else None


def _read_at(dirfd: int, name: str, limit: int = 16 * 1024 * 1024) -> bytes:
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dirfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAnOutput(f"{name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


class Generation:
    """One build's OUT, held open by descriptor."""

    def __init__(self, dirfd: int, manifest: dict[str, Any]) -> None:
        self.dirfd = dirfd
        info = os.fstat(dirfd)
        self.identity = (info.st_dev, info.st_ino)
        self.manifest = manifest
        self.nodes: dict[str, SeedNode] = {}
        self.by_mac: dict[str, str] = {}
        self._contents: dict[tuple[str, str], bytes] = {}
        self._cached_bytes = 0
        for entry in manifest.get("nodes", []):
            # Names become paths relative to OUT: only what the profile schema allows (never '..' or '/').
            if not isinstance(entry, dict) or not _NODE_NAME.fullmatch(str(entry.get("name"))):
                continue
            mac = normalize_mac(entry["mac"]) if isinstance(entry.get("mac"), str) else None
            iso = entry.get("iso") if entry.get("iso") == f"{entry['name']}.iso" else None
            digest = entry.get("sha256") if isinstance(entry.get("sha256"), str) else None
            ignition = entry.get("ignition") if entry.get("ignition") == f"{entry['name']}.ign" else None
            node = SeedNode(entry["name"], str(entry.get("role", "")), mac, iso,
                            digest if digest and re.fullmatch(r"[0-9a-f]{64}", digest) else None, ignition)
            self.nodes[node.name] = node
            if mac:
                self.by_mac[mac] = node.name

    def open_seed_file(self, node: str, filename: str) -> tuple[int, int]:
        """(fd, size) of OUT/<node>/<filename>; refuses symbolic links and anything not a regular file."""
        if node not in self.nodes:
            raise SeedRefused(404, f"no node '{node}' in this build")
        if filename not in SEED_FILES:
            raise SeedRefused(404, f"no seed file '{filename}'")
        try:
            node_fd = os.open(node, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=self.dirfd)
        except OSError as exc:
            raise self._refusal(exc, f"{node}/") from exc
        try:
            return self._open_regular(filename, node_fd, f"{node}/{filename}")
        finally:
            os.close(node_fd)

    def seed_bytes(self, node: str, filename: str) -> bytes:
        """The contents of OUT/<node>/<filename>, read (with the checks of open_seed_file) once per generation."""
        key = (node, filename)
        cached = self._contents.get(key)
        if cached is not None:
            return cached
        fd, size = self.open_seed_file(node, filename)
        try:
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        if len(data) != size:  # changed while read: never a build's own file (builds swap OUT whole)
            raise SeedRefused(500, f"{node}/{filename} changed while it was read")
        if size <= CACHE_FILE_BYTES and self._cached_bytes + size <= CACHE_BYTES:
            self._contents[key] = data
            self._cached_bytes += size
        return data

    def preload(self) -> tuple[int, int]:
        """Read every node's seed files into the cache, as far as it holds them: the server does this once at
        start, before it listens, so the first wave of a rack powering on costs no file system access (measured:
        the first event-loop turns after a start doubled the p99 of 500 clients). A file that cannot be served is
        left out here and refused when asked for, as before. Returns (files, bytes) held."""
        for node in self.nodes:
            for filename in SEED_FILES:
                if self._cached_bytes >= CACHE_BYTES:  # full: the rest is read on request, as before
                    return len(self._contents), self._cached_bytes
                with contextlib.suppress(SeedRefused):
                    self.seed_bytes(node, filename)
        return len(self._contents), self._cached_bytes

    def open_iso(self, node: str) -> tuple[int, int]:
        seed = self.nodes.get(node)
        if seed is None or not seed.iso or "/" in seed.iso or seed.iso in ("", ".", ".."):
            raise SeedRefused(404, f"no ISO for node '{node}' in this build")
        return self._open_regular(seed.iso, self.dirfd, seed.iso)

    def open_ignition(self, node: str) -> tuple[int, int]:
        seed = self.nodes.get(node)
        if seed is None:
            raise SeedRefused(404, f"no node '{node}' in this build")
        if not seed.ignition:
            raise SeedRefused(404, f"no Ignition config for node '{node}' in this build (build with --format ignition)")
        return self._open_regular(seed.ignition, self.dirfd, seed.ignition)

    def _open_regular(self, name: str, dirfd: int, shown: str) -> tuple[int, int]:
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=dirfd)
        except OSError as exc:
            raise self._refusal(exc, shown) from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise SeedRefused(403, f"{shown} is not a regular file")
        return fd, info.st_size

    @staticmethod
    def _refusal(exc: OSError, shown: str) -> SeedRefused:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return SeedRefused(403, f"{shown} is a symbolic link or not what the build wrote: refused")
        if exc.errno == errno.ENOENT:
            return SeedRefused(404, f"{shown} does not exist in this build")
        return SeedRefused(500, f"{shown}: {exc.strerror}")

    def close(self) -> None:
        os.close(self.dirfd)
        self._contents.clear()


class OutDir:
    """OUT as the server sees it now: reopened whenever a build swaps a new directory in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._generation: Generation | None = None
        self.swaps = 0

    def open_generation(self) -> Generation:
        try:
            dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise NotAnOutput(f"{self.path}: {exc.strerror}") from exc
        try:
            raw = _read_at(dirfd, MANIFEST)
            manifest = json.loads(raw.decode("utf-8"))
            if not isinstance(manifest, dict) or not isinstance(manifest.get("nodes"), list):
                raise NotAnOutput(f"{self.path}/{MANIFEST} has no node list")
        except (OSError, UnicodeDecodeError, ValueError, NotAnOutput) as exc:
            os.close(dirfd)
            detail = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise NotAnOutput(f"{self.path} is not a k8sseed build output ({MANIFEST}: {detail})") from exc
        return Generation(dirfd, manifest)

    def current(self) -> tuple[Generation, bool]:
        """The generation now in OUT, and whether it changed since the last call."""
        try:
            info = os.stat(self.path)
            identity = (info.st_dev, info.st_ino)
        except OSError:
            identity = None
        held = self._generation
        if held is not None and (identity is None or identity == held.identity):
            return held, False  # OUT briefly missing (first build's rename): keep serving what we hold
        fresh = self.open_generation()
        if held is not None:
            # Safe: requests open their files synchronously, so no request still needs the old descriptor.
            held.close()
            self.swaps += 1
        self._generation = fresh
        return fresh, True
