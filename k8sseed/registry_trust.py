"""mirrors.registryCA: the private registry's CA, and the registry hosts the nodes must trust it for.

Docker reads a registry's CAs from /etc/docker/certs.d/<host[:port]>/ca.crt (on top of the system pool, at each
pull: no restart); curl, apt and everything else read the system trust store, which update-ca-certificates
builds (Debian and Ubuntu from /usr/local/share/ca-certificates/*.crt, Flatcar from /etc/ssl/certs/*.pem).
Sources: Docker's docs "Verify repository client with certificates" (certs.d/<host:port>/ca.crt, a CA for the
registry at that host and port); Flatcar's docs setup/security/adding-certificate-authorities.md ("Copy the
PEM-encoded certificate authority file (usually with a .pem file name extension) to /etc/ssl/certs", then run
update-ca-certificates); Debian's update-ca-certificates(8) (*.crt under /usr/local/share/ca-certificates).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

DOCKER_CERTS_DIR = "/etc/docker/certs.d"
SYSTEM_CA_PATHS = {
    "debian": "/usr/local/share/ca-certificates/k8sseed-registry.crt",
    "ubuntu": "/usr/local/share/ca-certificates/k8sseed-registry.crt",
    "flatcar": "/etc/ssl/certs/k8sseed-registry.pem",
}
UPSTREAM_IMAGE_REPOSITORY = "registry.k8s.io"  # imageRepository left at kubeadm's registry: not a mirror


def _host(reference: str) -> str:
    """The registry host[:port] of an image path prefix such as harbor.example.com:5000/k8s."""
    return reference.split("/", 1)[0]


def mirror_registry_hosts(image_repository: str | None, calico_registry: str | None,
                          image_registry_prefixes: Iterable[str], docker_hub_mirrors: Iterable[str]) -> tuple[str, ...]:
    """Every registry the nodes pull from through a mirror setting, sorted, each once."""
    hosts = set()
    if image_repository and _host(image_repository) != UPSTREAM_IMAGE_REPOSITORY:
        hosts.add(_host(image_repository))
    if calico_registry:
        hosts.add(_host(calico_registry))
    hosts.update(_host(prefix) for prefix in image_registry_prefixes)
    hosts.update(urlsplit(url).netloc for url in docker_hub_mirrors if urlsplit(url).scheme == "https")
    return tuple(sorted(hosts))


def docker_ca_path(host: str) -> str:
    return f"{DOCKER_CERTS_DIR}/{host}/ca.crt"


def ca_problem(pem: str) -> str | None:
    """Why a PEM block cannot serve as the registry's CA, or None."""
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "the block is not a PEM X.509 certificate (its base64 does not decode to one): paste the CA " \
               "certificate whole, as `openssl x509 -in ca.crt` prints it"
    for number, certificate in enumerate(certificates, 1):
        which = f"certificate {number} ({certificate.subject.rfc4514_string() or 'no subject'})"
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return f"{which} has no basicConstraints extension, so it is no CA: paste the CA that signed the " \
                   "registry's certificate, not the registry's own certificate"
        if not constraints.ca:
            return f"{which} is not a CA certificate (basicConstraints CA:FALSE): paste the CA that signed the " \
                   "registry's certificate, not the registry's own certificate"
    return None
