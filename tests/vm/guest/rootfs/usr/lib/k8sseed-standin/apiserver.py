#!/usr/bin/python3
"""k8sseed TEST STAND-IN for a kube-apiserver (test image only, never shipped by the product).

Started by the kubeadm stand-in (`init`, control-plane `join`) as a transient unit via systemd-run:
    apiserver.py CHAIN KEY [ADDRESS [PORT [ETCD_CLIENT_URL]]]
CHAIN is the leaf certificate followed by the CA (both are served, like kube-apiserver does with a
cluster CA), KEY the leaf's key. Answers GET /healthz, /readyz, /livez with 200 "ok" and /version with
a small JSON; GET /k8sseed-standin/etcd with this node's etcd client URL (how a joining control plane's
kubeadm stand-in finds an etcd member, as kubeadm finds one through the cluster); anything else 404.
Logs when it listens to the stand-in logs (with a timestamp).
"""
import contextlib
import datetime
import http.server
import json
import socketserver
import ssl
import sys

LOG = "/var/log/k8sseed-standin.log"
JSONL = "/var/log/k8sseed-standin.jsonl"
ETCD_URL = sys.argv[5] if len(sys.argv) > 5 else ""


def version() -> str:
    try:
        with open("/etc/k8sseed-standin/version") as f:
            v = f.read().strip().lstrip("v") or "1.25.6"
    except OSError:
        v = "1.25.6"
    return v


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            status, body, ctype = 200, b"ok", "text/plain; charset=utf-8"
        elif path == "/k8sseed-standin/etcd" and ETCD_URL:
            status, body, ctype = 200, ETCD_URL.encode(), "text/plain; charset=utf-8"
        elif path == "/version":
            v = version()
            status, ctype = 200, "application/json"
            body = json.dumps({"major": "1", "minor": v.split(".")[1], "gitVersion": "v" + v,
                               "platform": "linux/amd64", "standin": "k8sseed"}).encode()
        else:
            status, body, ctype = 404, b"not found (k8sseed stand-in)", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):  # HTTPServer's own looks the name up (DNS), which the test VMs do not have
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class TLSServer(Server):
    def __init__(self, addr, handler, context):
        self.context = context
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return sock, addr

    def finish_request(self, request, client_address):
        # TLS handshake in the handler thread, so a slow or broken client never blocks accept()
        try:
            request.settimeout(10)
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


def log(event: str, **data) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    try:
        with open(LOG, "a") as f:
            f.write(f"=== {now} apiserver {event} " + " ".join(f"{k}={v}" for k, v in data.items()) + "\n")
        with open(JSONL, "a") as f:
            f.write(json.dumps({"time": now, "tool": "apiserver", "argv": [event], "files": {}, **data}) + "\n")
    except OSError:
        pass


def main() -> None:
    chain, key = sys.argv[1], sys.argv[2]
    address = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 6443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    server = TLSServer((address, port), Handler, context)
    log("listening", address=f"{address}:{port}", chain=chain)
    sys.stdout.write(f"k8sseed stand-in API server listening on {address}:{port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
