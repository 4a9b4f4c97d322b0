"""Prometheus plumbing shared by every tunery process: the /metrics endpoint and gRPC metrics.

Called by :func:`tunery.serving.create_server` (every gRPC service gets a
:class:`GrpcMetricsInterceptor`), by ``tunery serve ... --metrics-port``, ``tunery run
--metrics-port`` and ``tunery operator`` (:func:`serve_metrics`). The gRPC metrics use the
names of go-grpc-prometheus, which Katib's Go services and most Grafana dashboards know:
``grpc_server_started_total``, ``grpc_server_handled_total`` (by ``grpc_code``) and the
histogram ``grpc_server_handling_seconds``, each by ``grpc_service`` and ``grpc_method`` (so
``grpc_method="GetSuggestions"`` is the suggestion service's latency).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GrpcServerMetrics:
    """The gRPC server metrics of one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


_default: GrpcServerMetrics | None = None
_default_lock = threading.Lock()


def default_grpc_metrics() -> GrpcServerMetrics:
    """The process-wide gRPC metrics on prometheus_client's default registry."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GrpcServerMetrics()
        return _default


class GrpcMetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every unary-unary call (streaming calls are counted, not timed)."""

    def __init__(self, metrics: GrpcServerMetrics | None = None) -> None:
        self.metrics = metrics or default_grpc_metrics()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = str(handler_call_details.method).lstrip("/").rpartition("/")
        if handler.unary_unary is None:
            kind = "server_stream" if handler.unary_stream else "bidi_stream"
            self.metrics.started.labels(kind, service, method).inc()
            return handler
        behaviour = handler.unary_unary
        metrics = self.metrics

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            metrics.started.labels("unary", service, method).inc()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                response = behaviour(request, context)
                code = _code(context) or grpc.StatusCode.OK
                return response
            except BaseException:
                code = _code(context) or grpc.StatusCode.UNKNOWN
                raise
            finally:
                metrics.seconds.labels("unary", service, method).observe(
                    time.perf_counter() - started
                )
                metrics.handled.labels("unary", service, method, code.name).inc()

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()  # what set_code/abort recorded (None when nothing did)
    return code if isinstance(code, grpc.StatusCode) else None


def serve_metrics(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> tuple[Any, int]:
    """Serve ``registry`` (the default one) as Prometheus text on ``http://host:port/metrics``
    from a daemon thread; port 0 picks a free port. Returns the HTTP server and its port.

    Raises:
        OSError: the address cannot be bound.
    """
    server, _thread = start_http_server(
        port, addr=host, registry=REGISTRY if registry is None else registry
    )
    return server, int(server.server_port)
