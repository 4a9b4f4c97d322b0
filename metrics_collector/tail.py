"""The last lines of a trial's output, for MetricsUnavailable and failure messages.

Used by :class:`metrics_collector.collector.TrialCollector` (fed every chunk it parses) and by
the controller after a restart (:func:`read_last_lines` on the trial's log file). Lines are
shown as a terminal would: ANSI colours removed, a carriage-return redraw keeps its last state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_LINES = 20
MAX_LINE_CHARS = 500
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class OutputTail:
    """Keeps the end of an output stream (at most ``max_bytes``) and renders its last lines.

    ``feed`` costs O(len(chunk)) at worst and nothing per line; rendering happens on demand.
    """

    def __init__(self, lines: int = DEFAULT_LINES, *, max_bytes: int = 64 * 1024) -> None:
        self.max_lines = lines
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._trimmed = False

    def feed(self, chunk: bytes) -> None:
        if len(chunk) >= self.max_bytes:
            self._buf = bytearray(chunk[-self.max_bytes :])
            self._trimmed = True
            return
        self._buf += chunk
        if len(self._buf) > 2 * self.max_bytes:
            del self._buf[: -self.max_bytes]
            self._trimmed = True

    def lines(self) -> list[str]:
        """The last ``max_lines`` lines, each at most :data:`MAX_LINE_CHARS` characters."""
        return render_lines(bytes(self._buf), self.max_lines, partial_first=self._trimmed)


def render_lines(data: bytes, count: int, *, partial_first: bool = False) -> list[str]:
    """The last ``count`` lines of ``data`` as a terminal shows them."""
    text = _ANSI.sub("", data.decode("utf-8", "replace"))
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if partial_first and lines:
        lines.pop(0)
    shown = []
    for line in lines[-count:] if count else []:
        if "\r" in line:  # a progress bar redrawn with CR: the last non-empty state shows
            states = [s for s in line.split("\r") if s.strip()]
            line = states[-1] if states else ""
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " [...]"
        shown.append(line)
    return shown


def read_last_lines(path: str | os.PathLike[str], count: int = DEFAULT_LINES) -> list[str]:
    """The last ``count`` lines of a log file ([] if it does not exist)."""
    tail_bytes = 64 * 1024
    try:
        with Path(path).open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - tail_bytes)
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return []
    return render_lines(data, count, partial_first=start > 0)
