"""A server that answers every request at once without doing anything: the load generator's own floor.

Run by bench/serve_load.py under the rack model's load generator: the latency it measures here is what the
Python generator itself adds (opening connections and reading answers on one event loop, on the same 2 cores),
not the server's. Prints the same "listening on" line as `k8sseed serve`.
"""

from __future__ import annotations

import asyncio

SEED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
REPORT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.transport.write(SEED if self.buffer.startswith(b"GET ") else REPORT)
            self.transport.close()


async def main() -> None:
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0, backlog=4096)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/ event loop asyncio", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
