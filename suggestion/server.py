"""Run the Suggestion service as a gRPC server (health and reflection included).

Called by ``tunery serve suggestion`` (through :func:`serve`), by tests and benchmarks
(:func:`create_suggestion_server` on port 0), and as ``python -m suggestion.server``
(which prints ``listening on port N`` on stdout once bound, for parents that asked for 0).
Health answers SERVING for ``""``, ``manager.v1beta1.Suggestion`` (the name Katib's
controller probes) and ``api.v1.beta1.Suggestion``. SIGTERM/SIGINT stop it gracefully. A
handler whose call ends (deadline, cancel, shutdown) is interrupted (``tunery.rpc``). The
serving process keeps freed memory for reuse (:func:`keep_freed_memory`).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.service import SuggestionService, SuggestionServicer, add_to_server
from tunery.serving import DEFAULT_HOST, address, create_server, serve_forever
from tunery.tls import ServerTls

log = logging.getLogger(__name__)

DEFAULT_PORT = 6789

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap (glibc's default is 128 KiB, raised on the fly)."""
TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap kept for reuse (glibc's default: 128 KiB)."""


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory instead of returning it to the system.

    A request carries the whole history: at 10,000 trials its bytes (1 MB) and the models'
    arrays (hundreds of KiB to a few MiB each) are allocated and freed on every call. With
    glibc's defaults such blocks are fresh ``mmap`` regions, or the heap is trimmed after
    them, so every request faults their pages in again: about 2 ms of a tpe request at
    history 9,000 (docs/benchmarks.md). Memory use is still bounded by the service's caches;
    freed memory up to ``TRIM_THRESHOLD`` stays with the process. Returns False where the C
    library is not glibc (nothing changes there).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def create_suggestion_server(
    bind: str = f"{DEFAULT_HOST}:{DEFAULT_PORT}",
    *,
    service: SuggestionService | None = None,
    max_workers: int = 16,
    tls: ServerTls | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started, server for ``service`` (a new one by default), TLS with
    ``tls``; handlers are interrupted when their call ends.

    Returns:
        The server and the port it bound (``bind`` may use port 0).
    """
    servicer = SuggestionServicer(service)
    return create_server(
        [lambda server: add_to_server(servicer, server)],
        bind,
        max_workers=max_workers,
        tls=tls,
        interrupt=True,
    )


def preload_algorithms() -> list[str]:
    """Import every registered algorithm now, so no request pays for it; returns the names
    that could not be loaded (logged, not fatal: the others still serve)."""
    failed = []
    for name in sorted(REGISTRY):
        try:
            get_algorithm(name)
        except Exception:
            log.exception("algorithm %s cannot be loaded; requests for it will fail", name)
            failed.append(name)
    return failed


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    grace: float = 5.0,
    preload: bool = True,
    tls: ServerTls | None = None,
    on_ready: Callable[[int], None] | None = None,
    katib_data_dir: Path | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully within ``grace`` seconds.

    ``preload`` imports every registered algorithm first (no request pays for an import, and
    a broken one is logged at startup); without it each is imported on first use, so the
    process only holds the libraries of the algorithms it serves. ``on_ready`` is called
    with the bound port once the server is about to start (useful with port 0).
    ``katib_data_dir``: prepare pbt's checkpoint folders there, as Katib's service does
    (:mod:`suggestion.trial_dirs`).
    """
    keep_freed_memory()
    if preload:
        preload_algorithms()
    service = SuggestionService(katib_data_dir=katib_data_dir)
    server, bound = create_suggestion_server(address(host, port), service=service, tls=tls)
    log.info(
        "suggestion service listening on %s%s (algorithms: %s)",
        address(host, bound),
        " with TLS" if tls is not None else "",
        ", ".join(sorted(REGISTRY)),
    )
    if on_ready is not None:
        on_ready(bound)
    serve_forever(server, grace=grace)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tunery Suggestion gRPC service")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--no-preload",
        action="store_true",
        help="import each algorithm on first use instead of at startup",
    )
    parser.add_argument(
        "--katib-data-dir",
        type=Path,
        default=None,
        help="prepare pbt's checkpoint folders under DIR/<experiment>/<trial> as Katib's "
        "service does (for a Katib controller; Katib mounts its volume at /opt/katib/data)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve(
        args.host,
        args.port,
        preload=not args.no_preload,
        on_ready=lambda port: print(f"listening on port {port}", flush=True),
        katib_data_dir=args.katib_data_dir,
    )


if __name__ == "__main__":
    main()
