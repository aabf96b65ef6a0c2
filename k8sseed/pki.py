"""Deterministic cluster PKI: CAs and the service-account key, derived from the cluster secret."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8sseed.secrets import (
    LABEL_CA_KEY,
    LABEL_CA_SERIAL,
    LABEL_LEAF_KEY,
    LABEL_LEAF_SERIAL,
    LABEL_SA_KEY,
    ClusterSecret,
)

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class CertAndKey:
    cert_pem: str
    key_pem: str
    spki_sha256: str  # "sha256:<hex>", as kubeadm's --discovery-token-ca-cert-hash


@dataclass(frozen=True)
class ClusterPKI:
    ca: CertAndKey
    front_proxy_ca: CertAndKey
    etcd_ca: CertAndKey
    sa_key_pem: str
    sa_pub_pem: str

    @property
    def ca_cert_hash(self) -> str:
        return self.ca.spki_sha256


def _private_key(secret: ClusterSecret, label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(secret.derive(label, 48), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode("ascii")


def spki_hash(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _ca(secret: ClusterSecret, name: str, common_name: str, not_before: dt.datetime, days: int) -> CertAndKey:
    key = _private_key(secret, LABEL_CA_KEY.format(name=name))
    serial = int.from_bytes(secret.derive(LABEL_CA_SERIAL.format(name=name), 16), "big") >> 1 or 1
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(public).serial_number(serial)
        .not_valid_before(not_before).not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return CertAndKey(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _key_pem(key), spki_hash(cert))


def derive_pki(secret: ClusterSecret, not_before_date: str, validity_days: int) -> ClusterPKI:
    """Same secret and dates in, same PEM bytes out (deterministic ECDSA signatures)."""
    not_before = dt.datetime.fromisoformat(not_before_date).replace(tzinfo=dt.timezone.utc)
    sa = _private_key(secret, LABEL_SA_KEY)
    sa_pub = sa.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return ClusterPKI(
        ca=_ca(secret, "kubernetes", "kubernetes", not_before, validity_days),
        front_proxy_ca=_ca(secret, "front-proxy", "front-proxy-ca", not_before, validity_days),
        etcd_ca=_ca(secret, "etcd", "etcd-ca", not_before, validity_days),
        sa_key_pem=_key_pem(sa),
        sa_pub_pem=sa_pub,
    )


def issue_leaf(secret: ClusterSecret, ca: CertAndKey, name: str, common_name: str, *, server: bool,
               dns_names: Sequence[str] = (), ips: Sequence[str] = (), organization: str | None = None) -> CertAndKey:
    """A leaf certificate signed by ca, with its key derived from the secret under name (same secret, same bytes).
    server: serverAuth and clientAuth (etcd members use their server certificate as client of their peers too);
    otherwise clientAuth only. Valid as long as the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode("ascii"))
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode("ascii"), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the cluster CAs are ECDSA keys")
    key = _private_key(secret, LABEL_LEAF_KEY.format(name=name))
    serial = int.from_bytes(secret.derive(LABEL_LEAF_SERIAL.format(name=name), 16), "big") >> 1 or 1
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server \
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes)).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(ca_cert.not_valid_before_utc).not_valid_after(ca_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)
    return CertAndKey(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _key_pem(key), spki_hash(cert))
