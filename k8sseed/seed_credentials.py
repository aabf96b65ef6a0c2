"""What a seed carries over time: its certificates (from PEM in written files and base64 data in kubeadm configs
and kubeconfigs), the private keys beside them, the CA pins and the bootstrap token's lifetime. Read-only: used by
`k8sseed inspect`; never returns a private key or a token secret."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from k8sseed.components.bootstrap import ENV_PATH

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
# kubeconfig and kubeadm fields that embed PEM as base64.
_EMBEDDED = ("certificate-authority-data", "client-certificate-data", "client-key-data")
_KUBEADM_FILES = ("/etc/k8sseed/kubeadm-init.yaml", "/etc/k8sseed/kubeadm-join.yaml")
KUBEADM_DEFAULT_TOKEN_TTL = "24h"  # kubeadm DefaultTokenDuration, when a bootstrap token sets neither ttl nor expires


def _spki_sha256(public_key: Any) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _key_type(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return type(key).__name__


def _embedded(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(location, PEM text) for every base64 PEM field anywhere in a YAML document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _EMBEDDED and isinstance(item, str):
                try:
                    text = base64.b64decode(item, validate=True).decode("ascii")
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    continue
                yield f"{where} {key}", text
            else:
                yield from _embedded(item, where)
    elif isinstance(value, list):
        for item in value:
            yield from _embedded(item, where)


def _pem_sources(files: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(location, text holding PEM blocks): each written file, and each base64 PEM field in its YAML."""
    for path, content in files.items():
        yield path, content
        if path.endswith((".yaml", ".yml", ".conf", ".kubeconfig")) and "-data:" in content:
            try:
                documents = list(yaml.safe_load_all(content))
            except yaml.YAMLError:
                continue
            for document in documents:
                yield from _embedded(document, path)


def _certificate_entry(cert: x509.Certificate, location: str) -> dict[str, Any]:
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        sans = []
    fingerprint = cert.fingerprint(hashes.SHA256())
    return {
        "location": location,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "notBefore": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256Fingerprint": ":".join(f"{b:02X}" for b in fingerprint),
        "spkiSha256": _spki_sha256(cert.public_key()),
        "ca": ca,
    }


def credentials(files: dict[str, str]) -> dict[str, Any]:
    """Certificates (each with `privateKeyPresent`), private keys (type and matching certificate, never the key)."""
    certificates: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    for location, text in _pem_sources(files):
        for match in _PEM.finditer(text):
            label, block = match.group(1), match.group(0).encode("ascii", "replace")
            if label == "CERTIFICATE":
                try:
                    certificates.append(_certificate_entry(x509.load_pem_x509_certificate(block), location))
                except ValueError:
                    certificates.append({"location": location, "error": "not a readable X.509 certificate"})
            elif label.endswith("PRIVATE KEY"):
                try:
                    key = serialization.load_pem_private_key(block, password=None)
                except (ValueError, TypeError):
                    keys.append({"location": location, "type": "unreadable or encrypted", "spkiSha256": None})
                    continue
                keys.append({"location": location, "type": _key_type(key),
                             "spkiSha256": _spki_sha256(key.public_key())})
    by_spki = {c.get("spkiSha256"): c for c in certificates}
    key_spkis = {k["spkiSha256"] for k in keys}
    for cert in certificates:
        cert["privateKeyPresent"] = cert.get("spkiSha256") in key_spkis
    for key in keys:
        match = by_spki.get(key["spkiSha256"]) if key["spkiSha256"] else None
        key["certificate"] = match["location"] if match else None
    return {"certificates": certificates, "privateKeys": keys}


def _kubeadm_documents(files: dict[str, str]) -> list[dict[str, Any]]:
    documents = []
    for path in _KUBEADM_FILES:
        try:
            documents += [d for d in yaml.safe_load_all(files.get(path, "")) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
    return documents


def _lifetime(ttl: Any, expires: Any) -> str:
    if expires is not None:
        return f"expires {expires}"
    text = KUBEADM_DEFAULT_TOKEN_TTL if ttl is None else str(ttl)
    if re.fullmatch(r"0+(\.0*)?([a-z]+)?|0h0m0s", text):
        return "never expires (ttl 0)"
    return f"ttl {text} after kubeadm init"


def _env_value(env_text: str, name: str) -> str | None:
    """A plain NAME=value line of the node's env file (values k8sseed writes there need no unquoting)."""
    match = re.search(rf"^{name}=([^\s'\"$`]+)$", env_text, re.MULTILINE)
    return match.group(1) if match else None


def bootstrap_tokens(files: dict[str, str]) -> dict[str, Any]:
    """The tokens the seed creates (InitConfiguration: id and lifetime as the config says it) and the token it
    joins with (id only); the CA pins it trusts. Token secrets are never returned."""
    created, join_id, pins = [], None, []
    # A window token's end is pinned by the bootstrap after init (kubeadm cannot take it from its config).
    pinned_end = _env_value(files.get(ENV_PATH, ""), "K8SSEED_INIT_TOKEN_EXPIRES")
    for doc in _kubeadm_documents(files):
        if doc.get("kind") == "InitConfiguration":
            for token in doc.get("bootstrapTokens") or []:
                if isinstance(token, dict):
                    created.append({"id": str(token.get("token", "")).split(".")[0],
                                    "ttl": None if token.get("ttl") is None else str(token.get("ttl")),
                                    "expires": pinned_end or token.get("expires"),
                                    "lifetime": _lifetime(token.get("ttl"), pinned_end or token.get("expires"))})
        elif doc.get("kind") == "JoinConfiguration":
            discovery = (doc.get("discovery") or {}).get("bootstrapToken") or {}
            if discovery.get("token"):
                join_id = str(discovery["token"]).split(".")[0]
            pins = [str(p) for p in discovery.get("caCertHashes") or []]
    return {"created": created, "joinTokenId": join_id, "caCertHashes": pins}


def encryption_keys(files: dict[str, str]) -> list[dict[str, Any]]:
    """The API server's encryption-at-rest keys a seed carries: file, resources, provider and key name (no key)."""
    found = []
    for path, content in files.items():
        if "kind: EncryptionConfiguration" not in content:
            continue
        try:
            documents = [d for d in yaml.safe_load_all(content) if isinstance(d, dict)]
        except yaml.YAMLError:
            continue
        for doc in documents:
            for rule in doc.get("resources") or []:
                for provider in (rule.get("providers") or []) if isinstance(rule, dict) else []:
                    for kind, config in provider.items() if isinstance(provider, dict) else []:
                        for key in (config or {}).get("keys") or [] if isinstance(config, dict) else []:
                            found.append({"location": path, "resources": list(rule.get("resources") or []),
                                          "provider": kind, "name": key.get("name")})
    return found


def seed_credentials(files: dict[str, str]) -> dict[str, Any]:
    found = credentials(files)
    found["encryptionKeys"] = encryption_keys(files)
    tokens = bootstrap_tokens(files)
    spkis = {c.get("spkiSha256") for c in found["certificates"]}
    tokens["caCertHashesMatch"] = [pin.lower() in spkis for pin in tokens["caCertHashes"]]
    return {**found, "bootstrapToken": tokens}


def days_left(not_after: str, now: dt.datetime | None = None) -> int:
    end = dt.datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    return (end - (now or dt.datetime.now(dt.timezone.utc))).days
