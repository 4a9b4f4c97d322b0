"""gRPC server plumbing shared by every tunery service: health, reflection, TLS, limits,
start and stop.

Called by ``suggestion.server``, ``earlystop.server`` and ``metrics_collector.dbmanager``.
Every server counts and times its calls (:mod:`tunery.telemetry`, served by ``--metrics-port``).
:func:`create_server` binds (port 0 picks a free port, for tests; :data:`DEFAULT_HOST` is
loopback) with TLS when given a :class:`~tunery.tls.ServerTls`, installs the call bounds of
:mod:`tunery.rpc`, and returns the server with its port; :func:`serve_forever` blocks until
SIGTERM/SIGINT, stops gracefully within the grace period, and makes sure the process exits
even if a handler is stuck.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tunery.api import api_pb2
from tunery.rpc import BoundaryInterceptor
from tunery.telemetry import GrpcMetricsInterceptor, GrpcServerMetrics
from tunery.tls import ServerTls

log = logging.getLogger(__name__)

KATIB_SUGGESTION_HEALTH_NAME = "manager.v1beta1.Suggestion"
"""The service name Katib's controller probes (``consts.DefaultGRPCService``)."""

LIVENESS_HEALTH_NAME = "tunery.Liveness"
"""Answers SERVING while the process serves at all, whatever its dependencies: what a
Kubernetes liveness probe asks (``grpc: {port, service: tunery.Liveness}``), so a database
outage makes the pod unready (the other names) without getting it restarted."""

DEFAULT_HOST = "127.0.0.1"
"""Where ``tunery serve`` listens unless told (``--host 0.0.0.0``, as deploy/ does)."""

MAX_MESSAGE_BYTES = 2**31 - 1
"""Largest reply a server sends (a reply is as large as the caller asked for)."""

MAX_REQUEST_BYTES = 256 * 2**20
"""Largest request a server accepts (256 MiB); a larger one is refused by gRPC itself with
RESOURCE_EXHAUSTED before any handler runs. Each service bounds its work further (the
Suggestion service: trials per request, grid values per parameter)."""

HARD_EXIT_AFTER_GRACE_S = 1.0
"""After SIGTERM, in-flight calls get the grace period; if the process has not exited this
long after it (a handler stuck in a call that cannot be interrupted), it exits at once."""


def address(host: str, port: int) -> str:
    """``host:port`` for gRPC, bracketing an IPv6 literal."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


PROBE_INTERVAL_S = 1.0
"""A dependency probe's answer is reused for this long, so frequent health checks (one per
kubelet probe and per client) do not each cost a database round trip."""


class ProbingHealthServicer(health.HealthServicer):
    """Standard health whose statuses follow a dependency: each ``Check`` (at most once per
    :data:`PROBE_INTERVAL_S`) runs ``probe``; an exception turns every service NOT_SERVING,
    success turns them back to SERVING. Katib's db-manager answers its health checks the same
    way (a ``SELECT 1`` per check)."""

    def __init__(self, probe: Callable[[], None], names: Iterable[str]) -> None:
        super().__init__()
        self._probe = probe
        self._names = tuple(names)
        self._probe_lock = threading.Lock()
        self._probed_at = -math.inf
        self._healthy: bool | None = None

    def refresh(self) -> bool:
        """Run the probe unless it ran within the interval; whether the dependency is up."""
        with self._probe_lock:
            now = time.monotonic()
            if self._healthy is not None and now - self._probed_at < PROBE_INTERVAL_S:
                return self._healthy
            try:
                self._probe()
                healthy = True
            except Exception as exc:  # any failure of the dependency means not serving
                healthy = False
                if self._healthy is not False:
                    log.warning("health probe failed, now NOT_SERVING: %s", exc)
            else:
                if self._healthy is False:
                    log.info("health probe succeeded again, now SERVING")
            self._probed_at, self._healthy = time.monotonic(), healthy
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            self.set(name, status)
        return healthy

    def Check(  # the generated servicer's method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.refresh()
        return super().Check(request, context)


def create_server(
    register: Iterable[Callable[[grpc.Server], str]],
    address: str = f"{DEFAULT_HOST}:6789",
    *,
    max_workers: int = 16,
    probe: Callable[[], None] | None = None,
    tls: ServerTls | None = None,
    interrupt: bool = False,
    metrics: GrpcServerMetrics | None = None,
) -> tuple[grpc.Server, int]:
    """Build a started-ready (not yet started) server with health and reflection.

    ``register`` holds callables that add one servicer to the server and return its
    fully-qualified service name (e.g. ``"api.v1.beta1.Suggestion"``). Health answers SERVING
    for ``""``, for ``manager.v1beta1.Suggestion`` and for every registered name; with a
    ``probe`` (a callable that raises when a dependency such as the database is down) those
    answers follow it (:class:`ProbingHealthServicer`). :data:`LIVENESS_HEALTH_NAME` always
    answers SERVING. With ``tls`` the port speaks only TLS (mutual TLS when it names a client
    CA). Every unary call's error details are truncated; with ``interrupt`` a handler is also
    stopped when its call ends (see :mod:`tunery.rpc`): for services whose handlers are pure
    computation. Every call is counted and timed in ``metrics`` (the process's default
    registry unless given; :mod:`tunery.telemetry`).

    Returns:
        The server and the port it bound.

    Raises:
        OSError: the address cannot be bound. TlsError: a TLS file cannot be read.
    """
    credentials = tls.credentials() if tls is not None else None  # fail before binding
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[GrpcMetricsInterceptor(metrics), BoundaryInterceptor(interrupt=interrupt)],
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ],
    )
    names = [add(server) for add in register]
    health_names = ("", KATIB_SUGGESTION_HEALTH_NAME, *names)
    health_servicer = (
        health.HealthServicer() if probe is None else ProbingHealthServicer(probe, health_names)
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*health_names, LIVENESS_HEALTH_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port


def service_name(service: str) -> str:
    """Fully-qualified name of a service of ``api.proto``, e.g. ``"Suggestion"``."""
    return api_pb2.DESCRIPTOR.services_by_name[service].full_name


def serve_forever(server: grpc.Server, *, grace: float = 5.0) -> None:
    """Start ``server`` and block until SIGTERM or SIGINT, then stop it: calls in flight get
    ``grace`` seconds, are then cancelled (interruptible handlers stop at once, see
    :mod:`tunery.rpc`), and if the process is still alive :data:`HARD_EXIT_AFTER_GRACE_S`
    later (a handler that cannot be interrupted), it exits with status 1 without waiting.
    Call it from the main thread (signal handlers live there)."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping (grace %.1fs)", signal.Signals(signum).name, grace)
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        stop.wait()
    finally:
        _arm_hard_exit(grace + HARD_EXIT_AFTER_GRACE_S)
        server.stop(grace).wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _arm_hard_exit(after: float) -> None:
    """Exit the process ``after`` seconds from now unless it exits by itself first (a daemon
    timer: it dies with the process; worker threads still busy would otherwise keep the
    interpreter from exiting)."""

    def _exit() -> None:
        log.error("handlers still running %.1fs after the stop request; exiting now", after)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(after, _exit)
    timer.daemon = True
    timer.start()
