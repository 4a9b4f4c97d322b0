"""One reaper for all of a runner's trial processes: a single thread waiting on their pidfds.

Used by :class:`controller.runners.local.LocalRunner` for the trials it starts itself (the
``/bin/sh`` wrapper processes); trials forked by the warm pool are reported by their fork
server instead (:mod:`controller.runners.warm`). Instead of a thread per trial blocked in
``wait()``, each started process gets a pidfd (``pidfd_open``, Linux 5.3), and one thread
selects over all of them and calls ``on_exit([(process, handle), ...])`` once with those one
wake-up found exited (trials that end together are handled together: the runner looks for
their leftover processes with one scan). Where pidfds are not available, a process falls back
to a thread of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import subprocess
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Exited = list[tuple["subprocess.Popen[bytes]", dict[str, Any]]]
ExitCallback = Callable[[Exited], None]


class Reaper:
    """Calls ``on_exit([(process, handle), ...])`` (from its one thread) when watched
    processes exit."""

    def __init__(self, on_exit: ExitCallback) -> None:
        self._on_exit = on_exit
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._added: list[tuple[int, subprocess.Popen[bytes], dict[str, Any]]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, process: subprocess.Popen[bytes], handle: dict[str, Any]) -> None:
        """Call ``on_exit`` once ``process`` has exited (at once if it already has)."""
        try:
            pidfd = os.pidfd_open(process.pid)
        except (OSError, AttributeError):  # no pidfds here: this process gets its own thread
            threading.Thread(target=self._wait_alone, args=(process, handle), daemon=True).start()
            return
        with self._lock:
            if self._closed:
                os.close(pidfd)
                return
            self._added.append((pidfd, process, handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
                self._thread.start()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _wait_alone(self, process: subprocess.Popen[bytes], handle: dict[str, Any]) -> None:
        process.wait()
        self._call([(process, handle)])

    def _call(self, exited: Exited) -> None:
        try:
            self._on_exit(exited)
        except Exception:  # the reaper serves every trial: one failure must not end it
            log.exception("handling the exit of trial process(es) %s", [p.pid for p, _ in exited])

    def _run(self) -> None:
        while True:
            exited: Exited = []
            for key, _ in self._selector.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    with self._lock:
                        if self._closed:
                            self._shut()
                            return
                        added, self._added = self._added, []
                    for pidfd, process, handle in added:
                        self._selector.register(pidfd, selectors.EVENT_READ, (process, handle))
                    continue
                process, handle = key.data
                self._selector.unregister(key.fd)
                os.close(key.fd)
                process.wait()  # exited: returns at once and reaps it
                exited.append((process, handle))
            if exited:
                self._call(exited)

    def _shut(self) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def close(self) -> None:
        """Stop watching (the processes keep running; their exits are no longer reported)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._thread is not None
            added, self._added = self._added, []
        for pidfd, _, _ in added:
            os.close(pidfd)
        if started:
            self._wake()
        else:
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
