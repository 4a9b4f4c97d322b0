"""The Suggestion service over real gRPC: Katib's wire contract, health, reflection, errors,
concurrency, restart-rebuild, and a graceful stop on SIGTERM."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.algorithms.base import Algorithm, SuggestRequest
from suggestion.server import create_suggestion_server, keep_freed_memory
from suggestion.service import SuggestionService
from tunery.api import api_pb2, api_pb2_grpc
from tunery.space import Assignment

from .helpers import Server, add_trial, experiment, objective_value, wire

UNSTAGED = sorted(a for a in REGISTRY if "staged" not in get_algorithm(a).capabilities)
"""Algorithms that always answer (staged ones, e.g. hyperband, wait for rungs to finish;
tests/suggestion/test_hyperband.py drives them)."""

ROOT = Path(__file__).resolve().parents[2]
STEPPED = (
    ("lr", api_pb2.DOUBLE, {"min": "0.1", "max": "0.9", "step": "0.2"}),
    ("layers", api_pb2.INT, {"min": "1", "max": "6"}),
    ("width", api_pb2.INT, {"min": "8", "max": "64", "step": "8"}),
    ("opt", api_pb2.CATEGORICAL, {"list": ["sgd", "adam"]}),
)


def request_for(exp: api_pb2.Experiment, count: int = 1) -> api_pb2.GetSuggestionsRequest:
    return api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=count)


def complete_all(req: api_pb2.GetSuggestionsRequest) -> None:
    for trial in req.trials:
        if trial.status.condition == api_pb2.TrialStatus.RUNNING:
            trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
            values = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
            trial.status.observation.metrics.add(name="loss", value=objective_value(values))


def closed_loop(
    stub: api_pb2_grpc.SuggestionStub, req: api_pb2.GetSuggestionsRequest, steps: int
) -> api_pb2.GetSuggestionsRequest:
    for _ in range(steps):
        reply = stub.GetSuggestions(req, timeout=30)
        assert len(reply.parameter_assignments) == req.current_request_number
        complete_all(req)
        for pa in reply.parameter_assignments:
            add_trial(req, pa.assignments, api_pb2.TrialStatus.RUNNING)
    return req


# -- plumbing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "manager.v1beta1.Suggestion", "api.v1.beta1.Suggestion"])
def test_health_is_serving(server: Server, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server: Server) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    [response] = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in response.list_services_response.service}
    assert {"api.v1.beta1.Suggestion", "grpc.health.v1.Health"} <= names


# -- suggestions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", UNSTAGED)
def test_round_trip_for_every_algorithm(server: Server, algorithm: str) -> None:
    req = request_for(experiment(algorithm, name=f"rt-{algorithm}", params=STEPPED), 3)
    req = closed_loop(server.stub, req, 5)
    seen = set()
    for trial in req.trials:
        values = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
        assert values["layers"].isdigit() and values["width"].isdigit()  # ints as integers
        assert values["opt"] in ("sgd", "adam")
        assert 0.1 <= float(values["lr"]) <= 0.9
        seen.add(tuple(sorted(values.items())))
    assert len(req.trials) == 15
    if "repeats" not in get_algorithm(algorithm).capabilities:  # pbt repeats on purpose
        assert len(seen) == 15


def test_validate_ok_and_invalid_argument_messages(server: Server) -> None:
    ok = api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment("tpe"))
    assert server.stub.ValidateAlgorithmSettings(ok) == api_pb2.ValidateAlgorithmSettingsReply()
    cases = {
        "unknown setting foo for algorithm tpe": experiment("tpe", settings={"foo": "1"}),
        "failed to validate n_startup_trials(x)": experiment(
            "tpe", settings={"n_startup_trials": "x"}
        ),
        "unknown algorithm name nope": experiment("nope"),
        "Max Trial Count: 481 > all possible search combinations: 480": experiment(
            "grid", params=STEPPED, max_trial_count=481
        ),
        "cmaes only supports two or more dimensional continuous search space.": experiment(
            "cmaes", params=(STEPPED[0], STEPPED[3])
        ),
        "parameter lr: min 0.5 must be less than max 0.1": experiment(
            "random", params=(("lr", api_pb2.DOUBLE, {"min": "0.5", "max": "0.1"}),)
        ),
    }
    for message, exp in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            server.stub.ValidateAlgorithmSettings(
                api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp)
            )
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in info.value.details()


def test_bad_requests_are_invalid_argument_and_exhaustion_out_of_range(server: Server) -> None:
    bad = request_for(experiment("random"), 1)
    add_trial(bad, {"lr": "oops", "layers": "1", "opt": "sgd"}, name="t-bad")
    with pytest.raises(grpc.RpcError) as info:
        server.stub.GetSuggestions(bad)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "trial t-bad: lr: 'oops' is not a number" in info.value.details()

    raw = server.channel.unary_unary("/api.v1.beta1.Suggestion/GetSuggestions")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\xff\xff")  # an experiment field longer than the message
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in info.value.details()

    tiny = (("n", api_pb2.INT, {"min": "1", "max": "2"}),)
    req = request_for(experiment("grid", params=tiny), 2)
    closed_loop(server.stub, req, 1)
    with pytest.raises(grpc.RpcError) as info:
        server.stub.GetSuggestions(req)
    assert info.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert "the grid is exhausted" in info.value.details()


class Crashing(Algorithm):
    name = "crashing"

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        raise ZeroDivisionError("division by zero in the model")


@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    module = types.ModuleType("tunery_test_crashing")
    module.Crashing = Crashing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tunery_test_crashing", module)
    monkeypatch.setitem(REGISTRY, "crashing", "tunery_test_crashing:Crashing")
    yield "crashing"


def test_internal_errors_are_reported_and_the_server_keeps_serving(
    server: Server, crashing: str
) -> None:
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            server.stub.GetSuggestions(request_for(experiment(crashing), 1))
        assert info.value.code() is grpc.StatusCode.INTERNAL
        assert info.value.details() == (
            "internal error: ZeroDivisionError: division by zero in the model"
        )
    reply = server.stub.GetSuggestions(request_for(experiment("random"), 2))
    assert len(reply.parameter_assignments) == 2


# -- Katib's wire contract, without the generated stubs -----------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _f(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _parse(data: bytes) -> dict[int, list[bytes | int]]:
    fields: dict[int, list[bytes | int]] = {}
    pos = 0
    while pos < len(data):
        tag = 0
        shift = 0
        while True:
            byte = data[pos]
            pos += 1
            tag |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        assert tag & 7 == 2, "only length-delimited fields are expected in replies"
        length = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        fields.setdefault(tag >> 3, []).append(data[pos : pos + length])
        pos += length
    return fields


def test_katib_field_numbers_by_hand(server: Server) -> None:
    """A request encoded from Katib's api.proto field numbers (katib-reference.md §1)."""
    double, integer = 1, 2
    param_lr = _f(1, "lr") + _f(2, double) + _f(3, _f(1, "0.1") + _f(2, "0.001"))
    param_n = _f(1, "n") + _f(2, integer) + _f(3, _f(1, "4") + _f(2, "1") + _f(5, 1))
    spec = (
        _f(1, _f(1, param_lr) + _f(1, param_n))  # parameter_specs
        + _f(2, _f(1, 1) + _f(3, "loss"))  # objective: MINIMIZE, metric
        + _f(3, _f(1, "tpe") + _f(2, _f(1, "random_state") + _f(2, "7")))  # algorithm
        + _f(5, 3)  # parallel_trial_count
    )
    trial = (
        _f(1, "katib-trial-1")
        + _f(2, _f(3, _f(1, _f(1, "lr") + _f(2, "0.01")) + _f(1, _f(1, "n") + _f(2, "2"))))
        + _f(3, _f(3, 2) + _f(4, _f(1, _f(1, "loss") + _f(2, "0.5"))))  # SUCCEEDED + metric
    )
    request = _f(1, _f(1, "katib-exp") + _f(2, spec)) + _f(2, trial) + _f(4, 2)
    call = server.channel.unary_unary("/api.v1.beta1.Suggestion/GetSuggestions")
    reply = _parse(call(request, timeout=10))
    assignments = [_parse(pa)[1] for pa in reply[1]]  # type: ignore[arg-type]
    assert len(assignments) == 2
    for pa in assignments:
        pairs = {_parse(a)[1][0]: _parse(a)[2][0] for a in pa}  # type: ignore[arg-type]
        assert set(pairs) == {b"lr", b"n"}
        assert 0.001 <= float(pairs[b"lr"]) <= 0.1
        assert pairs[b"n"] in (b"1", b"2", b"3", b"4")
        assert (pairs[b"lr"], pairs[b"n"]) != (b"0.01", b"2")
    # the generated stubs read the same bytes the same way
    typed = api_pb2.GetSuggestionsRequest.FromString(request)
    assert typed.experiment.spec.algorithm.algorithm_settings[0].value == "7"
    assert typed.trials[0].status.observation.metrics[0].value == "0.5"


# -- one shared service ---------------------------------------------------------------------------


def test_concurrent_experiments_over_grpc(server: Server) -> None:
    errors: list[BaseException] = []
    done: dict[str, api_pb2.GetSuggestionsRequest] = {}

    def drive(name: str, algorithm: str) -> None:
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        try:
            done[name] = closed_loop(
                stub, request_for(experiment(algorithm, name=name, params=STEPPED), 2), 10
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=drive, args=(f"c{i}", algo))
        for i, algo in enumerate(["tpe", "tpe", "random", "multivariate-tpe", "cmaes", "sobol"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(done) == 6
    for req in done.values():
        keys = {
            tuple(a.value for a in t.spec.parameter_assignments.assignments) for t in req.trials
        }
        assert len(keys) == len(req.trials) == 20
    assert set(server.service.cached_experiments()) == {f"c{i}" for i in range(6)}


def test_a_restarted_server_answers_like_the_warm_one(server: Server) -> None:
    req = closed_loop(server.stub, request_for(experiment("tpe", name="restart"), 2), 12)
    complete_all(req)
    warm = server.stub.GetSuggestions(req)
    fresh, port = create_suggestion_server("localhost:0", service=SuggestionService())
    fresh.start()
    try:
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            cold = api_pb2_grpc.SuggestionStub(channel).GetSuggestions(req, timeout=30)
    finally:
        fresh.stop(None).wait()
    assert cold == warm
    assert [wire(pa) for pa in cold.parameter_assignments]


def test_serve_stops_gracefully_on_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "suggestion.server", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on port "), line
        port = int(line.split()[-1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            reply = api_pb2_grpc.SuggestionStub(channel).GetSuggestions(
                request_for(experiment("random"), 1), timeout=30
            )
            assert len(reply.parameter_assignments) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "received SIGTERM, stopping" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_server_keeps_freed_memory_where_malloc_is_glibcs() -> None:
    """glibc accepts the thresholds (a refused value would return False); elsewhere it is a
    no-op that says so."""
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
