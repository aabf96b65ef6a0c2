"""The burst model of bench/serve_load.py: every node of the rack asks for a seed file in the same instant.

ab (ApacheBench, Debian package `apache2-utils`, in C) opens --clients connections at once, each sends one
request and waits for the whole answer and the close, as a node's first fetch does; one run per seed file, in
cloud-init's order. The Python rack model cannot show this case: its own event loop, opening 500 connections
at once, adds about as much latency as it measures (a server that answers without doing anything gets the
same p99 from it, `null_server.py`). ab asks for one URL per run: all clients fetch the same worker's file by
MAC (each file is read from disk once per server, then kept in memory per build: in a rack each node's
first fetch reads its own file, 10-20 us more per request).
"""

from __future__ import annotations

import re
import shutil
import subprocess

SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")


def run_ab(url: str, clients: int) -> dict[str, float]:
    """One burst: `clients` connections at once, one request each. Latency percentiles in ms."""
    ab = shutil.which("ab")
    if ab is None:
        raise FileNotFoundError("ab is not installed (sudo apt-get install apache2-utils)")
    result = subprocess.run([ab, "-q", "-n", str(clients), "-c", str(clients), "-s", "30", url],
                            capture_output=True, text=True, timeout=120, check=True)
    text = result.stdout
    figures: dict[str, float] = {}
    for name, pattern in (("complete", r"Complete requests:\s+(\d+)"), ("failed", r"Failed requests:\s+(\d+)"),
                          ("non_2xx", r"Non-2xx responses:\s+(\d+)"), ("rate", r"Requests per second:\s+([\d.]+)")):
        match = re.search(pattern, text)
        figures[name] = float(match.group(1)) if match else 0.0
    for label, value in re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.MULTILINE):
        figures[f"p{label}"] = float(value)
    figures["errors"] = figures["failed"] + figures["non_2xx"] + (clients - figures["complete"])
    return figures
