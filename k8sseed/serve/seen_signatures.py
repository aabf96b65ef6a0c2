"""The signatures of the status reports accepted within the freshness window: a report seen once is a replay the
second time, also across a server restart.

Kept in memory in arrival order (stale ones leave from the front, O(1) per report) and on disk as journal
segments that only grow: each save appends the lines of the reports accepted since the last one, a segment is
closed after SEGMENT_LINES lines, and a closed segment is deleted once every signature in it is stale. Nothing
is ever rewritten whole: rewriting a rack's set (100 000 signatures: ~0.1 s of formatting) stalled the event
loop that serves the seeds. A line is "<signature> <node time>"; one torn by a crash is skipped.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

from k8sseed.serve.reports import FRESH_SECONDS

SEGMENT_LINES = 50_000
_SEGMENT = re.compile(r"seen-(\d{6})\.log")


class SeenSignatures:
    def __init__(self, directory: Path | None, earlier: dict[str, float] | None = None,
                 now: float | None = None) -> None:
        """Loads the journal in `directory` (None: memory only); `earlier`: signatures from an older state file."""
        self.directory = directory
        self.times: OrderedDict[str, float] = OrderedDict()
        self._unsaved: list[str] = []
        self._segment: Path | None = None  # the segment being appended to, None until the next save opens one
        self._segment_lines = 0
        self._segment_newest = float("-inf")
        self._closed: dict[Path, float] = {}  # closed segment -> the newest node time in it
        self._next_index = 1
        if directory is not None and directory.is_dir():
            for path in sorted(directory.iterdir()):
                match = _SEGMENT.fullmatch(path.name)
                if match:
                    self._next_index = max(self._next_index, int(match.group(1)) + 1)
                    self._closed[path] = self._load(path)
        for signature, time in (earlier or {}).items():
            if signature not in self.times:
                self.add(signature, time)
        if now is not None:
            self._drop_stale(now)

    def __contains__(self, signature: str) -> bool:
        return signature in self.times

    def __len__(self) -> int:
        return len(self.times)

    def add(self, signature: str, time: float, now: float | None = None) -> None:
        self.times[signature] = time
        self._unsaved.append(f"{signature} {time!r}\n")
        self._segment_newest = max(self._segment_newest, time)
        if now is not None:
            self._drop_stale(now)

    def _drop_stale(self, now: float) -> None:
        """Drops stale signatures from the front; one that arrived out of order waits its turn (harmless:
        verify refuses a stale report before it is looked up here)."""
        cutoff = now - FRESH_SECONDS
        times = self.times
        while times:
            if next(iter(times.values())) >= cutoff:
                return
            times.popitem(last=False)

    def save(self, now: float) -> None:
        """Appends what was accepted since the last save; closes a full segment; deletes stale closed ones."""
        if self.directory is None:
            return
        if self._unsaved:
            if self._segment is None:
                self._segment = self.directory / f"seen-{self._next_index:06d}.log"
                self._next_index += 1
                self._segment_lines = 0
            with self._segment.open("a", encoding="ascii") as journal:
                journal.write("".join(self._unsaved))
            self._segment_lines += len(self._unsaved)
            self._unsaved.clear()
            if self._segment_lines >= SEGMENT_LINES:
                self._closed[self._segment] = self._segment_newest
                self._segment, self._segment_newest = None, float("-inf")
        for path, newest in list(self._closed.items()):
            if newest < now - FRESH_SECONDS:
                path.unlink(missing_ok=True)
                del self._closed[path]

    def _load(self, path: Path) -> float:
        newest = float("-inf")
        try:
            text = path.read_text("ascii", errors="replace")
        except OSError:
            return newest
        for line in text.splitlines():
            signature, _, time = line.partition(" ")
            try:
                value = float(time)
            except ValueError:
                continue  # torn by a crash: it cannot make a replay pass
            self.times[signature] = value
            newest = max(newest, value)
        return newest

    def segments(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir() if _SEGMENT.fullmatch(p.name)) \
            if self.directory is not None and self.directory.is_dir() else []

