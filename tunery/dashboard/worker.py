"""The parameter importance's random forest, fitted in a worker process.

Created by :func:`tunery.dashboard.app.create_app` for a server that warms up (``tunery
dashboard``), before any of its threads start; :mod:`tunery.dashboard.api` passes
:meth:`ForestWorker.fit` to :func:`tunery.visualization.data.importance`. The worker is
forked at once and imports scikit-learn (about 1 s of CPU) there, on another core, so a cold
server's first requests do not share the interpreter with that import, and the experiment
page's first screen no longer waits for it in turn. The fit is the same function with the
same inputs, so the same importances. Where ``fork`` is not available (Windows) or the worker
died, the forest is fitted in-process, as without a worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from tunery.visualization.data import forest_importances

PARENT_POLL_S = 0.5
"""How often the worker checks that the server that forked it still runs."""


def _preload(server: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the server stops its worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(server,), daemon=True).start()
    import sklearn.ensemble  # noqa: F401


def _exit_with(server: int) -> None:
    """Ends the worker once the server process is gone, however it went (a killed server
    does not stop its pool)."""
    while os.getppid() == server:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _started() -> bool:
    return True


class ForestWorker:
    """One worker process fitting :func:`~tunery.visualization.data.forest_importances`."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                1, mp_context=context, initializer=_preload, initargs=(os.getpid(),)
            )
            self._pool.submit(_started)  # forks now, while this process has one thread

    def fit(self, features: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The forest's feature importances, from the worker (in-process if it is gone)."""
        if self._pool is not None:
            try:
                return self._pool.submit(forest_importances, features, target).result()
            except (BrokenProcessPool, RuntimeError):  # died, or shut down
                self._pool = None
        return forest_importances(features, target)

    def close(self) -> None:
        """Stop the worker; later fits run in-process."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
