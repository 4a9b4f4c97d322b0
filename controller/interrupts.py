"""SIGTERM and SIGHUP handled like Ctrl-C while an experiment runs on this machine.

Called by :func:`controller.local.run_until_done`, which serves ``tunery run``, ``tunery
resume``, the background drivers and the SDK's local ``tune()``. While it runs, SIGTERM and
SIGHUP (a ``kill``, a closed terminal, a batch scheduler's stop) do not end the process on the
spot: :class:`SignalWatch` records the signal and wakes the reconcile loop, which stops the
running trials, marks the experiment interrupted and raises ``KeyboardInterrupt("SIGTERM")``
(a plain KeyboardInterrupt whose argument names the signal: Python exits an uncaught one as it
does for Ctrl-C), so every caller handles them exactly as Ctrl-C. While the trials are
being stopped, :func:`shielded` defers further SIGINT/SIGTERM/SIGHUP so that the clean-up is
not cut short. Handlers are installed only in the main thread, and restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

WATCHED = (signal.SIGTERM, signal.SIGHUP)
"""Signals treated as Ctrl-C (SIGINT itself raises KeyboardInterrupt as Python does)."""


def signal_name(exc: KeyboardInterrupt) -> str | None:
    """The signal a KeyboardInterrupt raised here stands for (None: a plain Ctrl-C)."""
    name = str(exc)
    return name if name in {s.name for s in WATCHED} else None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class SignalWatch:
    """Records SIGTERM/SIGHUP while active (``with SignalWatch(wake.set):``)."""

    def __init__(self, on_signal: Callable[[], None] = lambda: None) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self.received: int | None = None

    def __enter__(self) -> SignalWatch:
        if _in_main_thread():
            for signum in WATCHED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self._on_signal()

    def raise_if_received(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(signal.Signals(self.received).name)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT, SIGTERM and SIGHUP while the block runs (stopping trials must finish);
    a signal that arrived meanwhile is not re-raised: the run is ending anyway."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, *WATCHED)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
