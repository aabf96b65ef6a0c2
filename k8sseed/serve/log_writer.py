"""The server's log: one line per request or event, written at once to stderr and the --log file.

Python's logging costs tens of microseconds a record; a request line here is one f-string and one write per
destination, with the timestamp formatted once a second (UTC), so logging every request stays cheap under load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time


class LogWriter:
    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self._second = -1
        self._stamp = ""

    def line(self, level: str, message: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        data = f"{self._stamp},{int((now - second) * 1000):03d} {level} {message}\n".encode("utf-8", "replace")
        for fd in self.fds:
            with contextlib.suppress(OSError):  # a full disk or a closed terminal must not stop the server
                os.write(fd, data)


class WriterHandler(logging.Handler):
    """The server's other messages (start, rebuilds, errors) through the same writer, in the same order."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.writer.line(record.levelname, message)
        except Exception:  # logging's own contract: never raise from emit
            self.handleError(record)
