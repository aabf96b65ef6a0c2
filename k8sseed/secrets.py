"""The cluster secret file and every value derived from it (DESIGN §4)."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sseed.errors import SecretError

SECRET_BYTES = 32
_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Every derived value has its own label; changing one changes that value only.
LABEL_BOOTSTRAP_TOKEN = "k8sseed/v1/bootstrap-token"
# Key of the time-window join tokens (k8sseed/join_tokens.py); control-plane seeds carry it, workers never.
LABEL_BOOTSTRAP_TOKEN_KEY = "k8sseed/v1/bootstrap-token-key"
LABEL_CA_KEY = "k8sseed/v1/ca-key/{name}"
LABEL_CA_SERIAL = "k8sseed/v1/ca-serial/{name}"
LABEL_SA_KEY = "k8sseed/v1/service-account-key"
# Leaf certificates the build issues (external etcd): key and serial per certificate, e.g. etcd-peer/etcd-1.
LABEL_LEAF_KEY = "k8sseed/v1/leaf-key/{name}"
LABEL_LEAF_SERIAL = "k8sseed/v1/leaf-serial/{name}"
LABEL_PASSWORD_SALT = "k8sseed/v1/password-salt/{user}"
LABEL_BGP_PASSWORD = "k8sseed/v1/bgp-password/{peer}"
LABEL_VRRP_PASSWORD = "k8sseed/v1/vrrp-password"
# HMAC-SHA256 key a node signs its bootstrap status reports with (k8sseed serve checks them).
LABEL_STATUS_KEY = "k8sseed/v1/status-key/{node}"
# The API server's secretbox key for Secrets at rest (32 bytes). Only control-plane seeds carry it.
LABEL_SECRETS_ENCRYPTION_KEY = "k8sseed/v1/secrets-encryption-key"
_PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class ClusterSecret:
    key: bytes

    def derive(self, label: str, length: int = 32) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label.encode("utf-8")).derive(self.key)

    def _text(self, label: str, alphabet: str, length: int) -> str:
        number = int.from_bytes(self.derive(label, 48), "big")
        chars = []
        for _ in range(length):
            number, digit = divmod(number, len(alphabet))
            chars.append(alphabet[digit])
        return "".join(chars)

    @property
    def bootstrap_token(self) -> str:
        text = self._text(LABEL_BOOTSTRAP_TOKEN, _TOKEN_ALPHABET, 22)
        return f"{text[:6]}.{text[6:]}"

    @property
    def bootstrap_token_key(self) -> bytes:
        return self.derive(LABEL_BOOTSTRAP_TOKEN_KEY)

    def password_salt(self, user: str) -> str:
        return self._text(LABEL_PASSWORD_SALT.format(user=user), _SALT_ALPHABET, 16)

    def bgp_password(self, peer: str) -> str:
        """TCP MD5 key for the sessions with one router: alphanumeric, so every config syntax takes it as is."""
        return self._text(LABEL_BGP_PASSWORD.format(peer=peer), _PASSWORD_ALPHABET, 24)

    def status_key(self, node: str) -> str:
        """Per-node key for status reports, hex: a node can sign for itself only."""
        return self.derive(LABEL_STATUS_KEY.format(node=node)).hex()

    @property
    def secrets_encryption_key(self) -> str:
        """The API server's secretbox key, base64 as EncryptionConfiguration wants it."""
        return base64.b64encode(self.derive(LABEL_SECRETS_ENCRYPTION_KEY, 32)).decode("ascii")

    @property
    def vrrp_password(self) -> str:
        # VRRP PASS authentication carries at most 8 characters.
        return self._text(LABEL_VRRP_PASSWORD, _PASSWORD_ALPHABET, 8)


def new_secret_text() -> str:
    return base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii") + "\n"


def write_new_secret(path: Path) -> None:
    """Create the secret file with mode 0600; never overwrite an existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise SecretError(f"{path} already exists: k8sseed init never overwrites a cluster secret") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(new_secret_text())


def _missing_secret_message(path: Path, given: bool) -> str:
    """A new secret means a new CA: point at a secret lying beside the profile before suggesting a new one.
    given: the path came from --secret, so the user already says where the secret is."""
    try:
        neighbours = sorted(p for p in path.parent.glob("*.secret") if p.is_file())
    except OSError:
        neighbours = []
    if given:
        if not path.parent.is_dir():
            return (f"{path}: cluster secret not found (no such file, given with --secret): {path.parent} does not "
                    "exist either; check the path")
        beside = ""
        if neighbours:
            shown = ", ".join(p.name for p in neighbours[:5])
            beside = f"; {path.parent} holds {shown}: if {'that is' if len(neighbours) == 1 else 'one of them is'} " \
                     "this cluster's secret, give it"
        return f"{path}: cluster secret not found (no such file, given with --secret): check the path{beside}"
    if neighbours:
        if len(neighbours) == 1:
            hint = f"{neighbours[0]} is beside it: if that is this cluster's secret, pass --secret {neighbours[0]}."
        else:
            hint = (f"{', '.join(str(p) for p in neighbours[:5])} are beside it: if one of them is this cluster's "
                    "secret, pass it with --secret FILE.")
        return (f"{path}: cluster secret not found, but {hint} Do not make a new one for an "
                "existing cluster: a new secret means a new CA and join token, and running nodes would not "
                "trust the new seeds")
    return (f"{path}: cluster secret not found; pass --secret FILE if the cluster has one elsewhere "
            "(a new secret means a new CA); for a new cluster, 'k8sseed init DIR' writes a profile and its secret")


def read_secret(path: Path, given: bool = False) -> ClusterSecret:
    """given: path came from --secret (not the default beside the profile)."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise SecretError(_missing_secret_message(path, given)) from exc
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the cluster secret: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{path}: the cluster secret must be a regular file")
    if info.st_mode & 0o077:
        raise SecretError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the cluster secret; "
                          f"run 'chmod 600 {path}'")
    if info.st_uid != os.geteuid():
        raise SecretError(f"{path}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()}); "
                          "the secret must belong to the user who builds")
    try:
        key = base64.b64decode(path.read_text("ascii").strip(), validate=True)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SecretError(f"{path}: not a base64 cluster secret "
                          f"(expected {SECRET_BYTES} random bytes in base64)") from exc
    if len(key) != SECRET_BYTES:
        raise SecretError(f"{path}: the secret holds {len(key)} bytes; expected {SECRET_BYTES} "
                          "(create one with 'k8sseed init')")
    return ClusterSecret(key)
