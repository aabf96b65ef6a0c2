"""What the network-namespace tests share: the availability check, process clean-up, and an HTTPS
stand-in for kube-apiserver with a serving certificate signed by the cluster CA of a plan."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8sseed.plan import ClusterPlan


def netns_unavailable() -> str | None:
    """Why these tests cannot create network namespaces here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available"
    return None


def wait_tcp(ns: str, address: str, port: int, limit: float = 10.0) -> None:
    """Until something accepts TCP connections on address:port inside the namespace."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        probe = subprocess.run(["ip", "netns", "exec", ns, "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"],
                               capture_output=True)
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {address}:{port} in {ns}")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# Run as: python3 api_standin.py ADDRESS PORT CERT KEY NAME. Answers /healthz, /readyz and /livez with 200 and
# names itself in an X-Served-By header (so a test sees which API server a load balancer picked).
API_STANDIN = r'''
import http.server, socketserver, ssl, sys

address, port, cert, key, name = sys.argv[1:]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path in ("/healthz", "/readyz", "/livez")
        body = b"ok" if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("X-Served-By", name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def server_bind(self):  # HTTPServer's own looks the address up in DNS, which stalls in a namespace
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):  # the TLS handshake runs in the request's thread
        request.settimeout(5)
        super().finish_request(context.wrap_socket(request, server_side=True), client_address)


Server((address, int(port)), Handler).serve_forever()
'''


def api_certificate(plan: ClusterPlan, directory: Path, names: Iterable[str], stem: str = "apiserver"
                    ) -> tuple[Path, Path]:
    """A serving certificate for names (IP addresses or DNS names) plus kubeadm's kubernetes and
    kubernetes.default, signed by the plan's cluster CA; written as STEM.crt and STEM.key."""
    ca_cert = x509.load_pem_x509_certificate(plan.pki.ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(plan.pki.ca.key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default")]
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file
