"""The apt repositories' signing keys: pinned fingerprints, default key sources, inline key blocks.

The node never trusts a key because of where it came from: k8sseed-apt (on the node) imports the key,
checks the pinned fingerprint and the expiry, and only then writes the keyring apt's signed-by= names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from k8sseed.versions import VERSION_TABLE

# "isv:kubernetes OBS Project", the one key of every pkgs.k8s.io core:/stable: stream. Its copy served at
# v1.24..v1.27/deb/Release.key expired on 2024-11-02 (kubernetes/release#3818); newer streams serve the same
# key (same fingerprint) with a refreshed expiry, which also verifies the old streams' signatures.
KUBERNETES_KEY_FINGERPRINT = "DE15B14486CD377B9E876E1A234654DA9A296436"
# "Docker Release (CE deb)", served at download.docker.com/linux/{debian,ubuntu}/gpg.
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"

UPSTREAM_KUBERNETES_PACKAGES = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
UPSTREAM_DOCKER_PACKAGES = "https://download.docker.com/linux/{family}"
_NEWEST = max(VERSION_TABLE)
# The newest stream k8sseed knows is the one whose key copy the project keeps refreshed.
KUBERNETES_KEY_URL = f"https://pkgs.k8s.io/core:/stable:/v{_NEWEST[0]}.{_NEWEST[1]}/deb/Release.key"

ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"


def is_inline_key(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN PGP")


def default_kubernetes_key(packages_template: str, repo_url: str) -> str:
    """pkgs.k8s.io: the current stream's (unexpired) copy of the key; a site's own mirror: the mirror's copy."""
    if packages_template == UPSTREAM_KUBERNETES_PACKAGES:
        return KUBERNETES_KEY_URL
    return repo_url + "Release.key"


def default_docker_key(repo_url: str) -> str:
    return repo_url.rstrip("/") + "/gpg"


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _armored_body(text: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != ARMOR_BEGIN:
        raise ValueError(f"does not start with '{ARMOR_BEGIN}'")
    if lines[-1] != ARMOR_END:
        raise ValueError(f"does not end with '{ARMOR_END}'")
    body = lines[1:-1]
    while body and ": " in body[0]:  # armor headers (Version:, Comment:)
        body.pop(0)
    checksum = None
    if body and body[-1].startswith("="):
        checksum = body.pop()[1:]
    data_text = "".join(line for line in body if line)
    try:
        data = base64.b64decode(data_text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its body is not base64: paste the block exactly as gpg --armor --export prints it") from None
    if not data:
        raise ValueError("its body is empty")
    if checksum is not None:
        try:
            expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError):
            raise ValueError("its checksum line is not base64") from None
        if expected != _crc24(data):
            raise ValueError("its checksum does not match: the block was changed or cut while copying it")
    return data


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    try:
        return _split_packets(data)
    except IndexError:
        raise ValueError("it is cut short (a packet header runs past the end)") from None


def _split_packets(data: bytes) -> list[tuple[int, bytes]]:
    packets, i = [], 0
    while i < len(data):
        head = data[i]
        if not head & 0x80:
            raise ValueError("it is not OpenPGP data")
        if head & 0x40:  # new packet format
            tag, first = head & 0x3F, data[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i + 2] + 192, i + 3
            elif first == 255:
                length, i = int.from_bytes(data[i + 2:i + 6], "big"), i + 6
            else:
                raise ValueError("it uses partial packet lengths, which key blocks never use")
        else:
            tag, kind = (head >> 2) & 0x0F, head & 0x03
            if kind == 3:
                raise ValueError("it uses an indeterminate packet length, which key blocks never use")
            size = 1 << kind
            length, i = int.from_bytes(data[i + 1:i + 1 + size], "big"), i + 1 + size
        if i + length > len(data):
            raise ValueError("it is cut short (a packet runs past the end)")
        packets.append((tag, data[i:i + length]))
        i += length
    return packets


def armored_key_fingerprints(text: str) -> tuple[str, ...]:
    """Fingerprints (40 upper-case hex) of the v4 primary keys in an ASCII-armored public key block.

    Raises ValueError saying what is wrong with the block.
    """
    packets = _packets(_armored_body(text))
    if any(tag == 5 for tag, _ in packets):
        raise ValueError("it holds a PRIVATE key: paste the public key only (gpg --armor --export FINGERPRINT)")
    primaries = [body for tag, body in packets if tag == 6]
    if not primaries or packets[0][0] != 6:
        raise ValueError("it holds no public key")
    return tuple(hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
                 for body in primaries if body[:1] == b"\x04")


FINGERPRINT = re.compile(r"[0-9A-F]{40}")
