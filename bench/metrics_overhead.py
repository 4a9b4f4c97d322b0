"""What Prometheus metrics cost: a gRPC call with and without the metrics interceptor, and the
controller's per-transition and per-pass metric updates.

gRPC: two in-process servers of the same Suggestion servicer, both built by
:func:`tunery.serving.create_server`, the second with its metrics interceptor replaced by a
pass-through; a client alternates rounds between them (``--rounds`` rounds of
``--calls`` sequential calls each, so load from other processes hits both alike) with two
requests: a health ``Check`` (the cheapest call: the interceptor's cost shows most) and a
``GetSuggestions`` of the ``random`` algorithm with ``--history`` completed trials (a real
call). Reports the median per-call time of each and the ratio.

Controller: the cost of one ``katib_trial_*`` increment and one histogram observation as the
reconciler makes them (``ControllerMetrics``), against one reconcile pass (tens of ms).

Usage (BLAS threads pinned to 1)::

    python -m bench.metrics_overhead
    python -m bench.metrics_overhead --rounds 10 --calls 300 --history 200
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from controller.metrics import ControllerMetrics  # noqa: E402
from suggestion.service import SuggestionServicer, add_to_server  # noqa: E402
from tunery import serving, telemetry  # noqa: E402
from tunery.api import api_pb2, api_pb2_grpc  # noqa: E402
from tunery.serving import create_server  # noqa: E402
from tunery.telemetry import GrpcServerMetrics  # noqa: E402
from tunery.trials import TrialCondition  # noqa: E402


class _NoMetrics(grpc.ServerInterceptor):
    """The baseline: create_server's metrics interceptor replaced by a pass-through."""

    def __init__(self, metrics: object = None) -> None:
        pass

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        return continuation(handler_call_details)


def _plain_server() -> tuple[grpc.Server, int]:
    """The same server as create_server builds (options, workers, health, reflection, the
    boundary interceptor), without the metrics interceptor."""
    saved = serving.GrpcMetricsInterceptor
    serving.GrpcMetricsInterceptor = _NoMetrics  # type: ignore[misc,assignment]
    try:
        return create_server([lambda s: add_to_server(SuggestionServicer(), s)], "127.0.0.1:0")
    finally:
        serving.GrpcMetricsInterceptor = saved  # type: ignore[misc]


def _request(history: int) -> api_pb2.GetSuggestionsRequest:
    spec = api_pb2.ExperimentSpec(
        parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(
            parameters=[
                api_pb2.ParameterSpec(
                    name=f"x{i}",
                    parameter_type=api_pb2.DOUBLE,
                    feasible_space=api_pb2.FeasibleSpace(min="0", max="1"),
                )
                for i in range(4)
            ]
        ),
        objective=api_pb2.ObjectiveSpec(type=api_pb2.MINIMIZE, objective_metric_name="loss"),
        algorithm=api_pb2.AlgorithmSpec(algorithm_name="random"),
    )
    request = api_pb2.GetSuggestionsRequest(
        experiment=api_pb2.Experiment(name="bench", spec=spec), current_request_number=1
    )
    for t in range(history):
        trial = request.trials.add(name=f"t{t}")
        trial.spec.parameter_assignments.assignments.extend(
            api_pb2.ParameterAssignment(name=f"x{i}", value=str((t * 7 + i) % 100 / 100))
            for i in range(4)
        )
        trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="loss", value=str(t % 13))
    return request


def _per_call(call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def grpc_overhead(rounds: int, calls: int, history: int) -> list[tuple[str, float, float]]:
    metered, metered_port = create_server(
        [lambda s: add_to_server(SuggestionServicer(), s)],
        "127.0.0.1:0",
        metrics=GrpcServerMetrics(CollectorRegistry()),
    )
    plain, plain_port = _plain_server()
    metered.start()
    plain.start()
    request = _request(history)
    results = []
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{metered_port}") as with_channel,
            grpc.insecure_channel(f"127.0.0.1:{plain_port}") as without_channel,
        ):
            stubs = {}
            for label, channel in (("with", with_channel), ("without", without_channel)):
                suggest = api_pb2_grpc.SuggestionStub(channel).GetSuggestions
                check = health_pb2_grpc.HealthStub(channel).Check
                stubs[label] = {
                    "Health/Check": lambda c=check: c(health_pb2.HealthCheckRequest(), timeout=10),
                    f"GetSuggestions (random, {history} trials)": (
                        lambda s=suggest: s(request, timeout=30)
                    ),
                }
            for name in stubs["with"]:
                for label in stubs:  # warm up
                    _per_call(stubs[label][name], 20)
                times: dict[str, list[float]] = {"with": [], "without": []}
                for r in range(rounds):
                    order = ("with", "without") if r % 2 == 0 else ("without", "with")
                    for label in order:
                        times[label].append(_per_call(stubs[label][name], calls))
                results.append(
                    (name, statistics.median(times["with"]), statistics.median(times["without"]))
                )
    finally:
        metered.stop(None)
        plain.stop(None)
    return results


def interceptor_cost(repeats: int = 20000) -> float:
    """Seconds the metrics wrapper adds to one unary call (no transport): a trivial handler
    called through the interceptor's wrapper minus called directly."""

    class Context:
        def code(self) -> None:
            return None

    def behaviour(request: object, context: object) -> object:
        return request

    handler = grpc.unary_unary_rpc_method_handler(behaviour)

    class Details:
        method = "/api.v1.beta1.Suggestion/GetSuggestions"

    interceptor = telemetry.GrpcMetricsInterceptor(GrpcServerMetrics(CollectorRegistry()))
    wrapped = interceptor.intercept_service(lambda _d: handler, Details()).unary_unary
    context = Context()
    started = time.perf_counter()
    for _ in range(repeats):
        behaviour(None, context)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        wrapped(None, context)
    return (time.perf_counter() - started - bare) / repeats


def controller_cost(repeats: int = 20000) -> tuple[float, float]:
    metrics = ControllerMetrics(CollectorRegistry())
    started = time.perf_counter()
    for _ in range(repeats):
        metrics.trial_ended("default", TrialCondition.SUCCEEDED)
    increment = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        with metrics.timed(metrics.reconcile_seconds, "default"):
            pass
    timed = (time.perf_counter() - started) / repeats
    return increment, timed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--history", type=int, default=100)
    args = parser.parse_args(argv)
    print("| call | with metrics (µs) | without (µs) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, with_m, without in grpc_overhead(args.rounds, args.calls, args.history):
        print(f"| {name} | {with_m * 1e6:.0f} | {without * 1e6:.0f} | {with_m / without:.3f} |")
    increment, timed = controller_cost()
    print()
    print(f"gRPC: the metrics wrapper adds {interceptor_cost() * 1e6:.2f} µs to a call "
          "(measured without transport)")  # fmt: skip
    print(f"controller: one katib_trial_* increment {increment * 1e6:.2f} µs; "
          f"one timed pass (histogram observe) {timed * 1e6:.2f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
