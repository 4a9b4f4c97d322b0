"""BackgroundLoop: the start/stop/join of a source's ``run()`` loop on a daemon thread.

Shared by :class:`metrics_collector.sources.FileTailer` and
:class:`metrics_collector.polling.Poller`, so both kinds of source are driven alike (the
local controller's collector wiring and the Kubernetes sidecar call them). A subclass writes
``run()``, which returns once ``_stop`` is set, after one last pass when ``_drain`` is true.
"""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    """Runs ``self.run()`` on a daemon thread named ``thread_name`` until :meth:`stop`."""

    thread_name = "background-loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._drain = True
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, *, drain: bool = True) -> None:
        """Stop the loop; with ``drain``, it takes what is pending first (one last pass)."""
        self._drain = drain
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop's thread; True once it has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
