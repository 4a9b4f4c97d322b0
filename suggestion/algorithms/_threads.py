"""One math-library thread while a model-based suggestion runs.

Private helper of ``suggestion.algorithms.bayesian``. A GP suggestion makes thousands of tiny
BLAS/LAPACK calls (30x30 to 400x400 matrices). With OpenBLAS's default thread pool, each call
wakes and synchronises every pool thread: on a busy 2-core machine that made a 10 ms
suggestion take 0.5 s. :func:`single_threaded_math` limits every loaded BLAS/OpenMP pool to
one thread (via ``threadpoolctl``, when installed) while at least one suggestion is inside it,
and restores the previous limits when the last one leaves, so concurrent requests on a shared
server never undo each other's limit halfway. Without ``threadpoolctl`` it does nothing (set
``OMP_NUM_THREADS=1``/``OPENBLAS_NUM_THREADS=1`` in the server's environment instead).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_users = 0
_controller: Any = None
_limiter: Any = None
_available: bool | None = None


def _enter() -> None:
    global _users, _controller, _limiter, _available
    with _lock:
        _users += 1
        if _users > 1 or _available is False:
            return
        try:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1)
            _available = True
        except Exception:  # threadpoolctl missing or unable to act: run as configured
            _available = False
            _limiter = None


def _leave() -> None:
    global _users, _limiter
    with _lock:
        _users -= 1
        if _users == 0 and _limiter is not None:
            _limiter.restore_original_limits()
            _limiter = None


@contextmanager
def single_threaded_math() -> Iterator[None]:
    """Run the body with single-threaded BLAS/OpenMP (see the module docstring)."""
    _enter()
    try:
        yield
    finally:
        _leave()
