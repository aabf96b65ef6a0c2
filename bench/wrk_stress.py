"""The closed-loop stress of bench/serve_load.py driven by wrk (Debian package `wrk`), a load generator in C.

The Python load generator costs about as much CPU per request as the server; on a 2-core machine it takes one
core's worth from the server. wrk keeps --connections keep-alive connections busy for --seconds, each thread
sending its own list of the same requests (seed fetches by MAC and signed status reports, the 4:10 mix of one
node's bootstrap), so its figure is closer to the server's own capacity. Lists are long enough that no report is
sent twice (a replay would be refused and counted as an error).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

LUA = Path(__file__).resolve().parent / "wrk_requests.lua"


def write_request_files(directory: Path, per_thread: list[list[bytes]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, requests in enumerate(per_thread):
        (directory / f"{index}.req").write_bytes(b"".join(r + b"\0" for r in requests))


def run_wrk(port: int, directory: Path, threads: int, connections: int, seconds: int) -> dict[str, object]:
    """wrk's figures: requests/s, latency percentiles (ms), errors (socket errors + non-2xx answers)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed (sudo apt-get install wrk)")
    result = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                             "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}/", "--", str(directory)],
                            capture_output=True, text=True, timeout=seconds + 60, check=True)
    text = result.stdout
    figures: dict[str, object] = {"output": text}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    figures["rate"] = float(rate.group(1)) if rate else float("nan")
    figures["requests"] = int(total.group(1)) if total else 0
    for label in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        figures[f"p{label}"] = _ms(match.group(1), match.group(2)) if match else float("nan")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    figures["errors"] = errors
    return figures


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]
