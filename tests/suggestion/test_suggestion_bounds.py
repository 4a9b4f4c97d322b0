"""The Suggestion server bounds its work: oversized grids and requests are refused fast, bad
numbers are INVALID_ARGUMENT, details are short, a handler whose call ended stops, and SIGTERM
ends the process within its grace period even mid-handler.

Real servers: in-process on port 0, and ``tunery serve suggestion`` as a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from suggestion.algorithms import REGISTRY
from suggestion.algorithms.base import Algorithm, SuggestRequest, UnsupportedSpaceError
from suggestion.algorithms.grid import MAX_GRID_VALUES, GridSearch
from suggestion.service import MAX_TRIALS_PER_REQUEST
from tunery.api import api_pb2, api_pb2_grpc
from tunery.rpc import MAX_DETAILS_CHARS
from tunery.space import Assignment, Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType

from .helpers import Server, add_trial, experiment

ROOT = Path(__file__).resolve().parents[2]
FLOOD_PARAMS = (("lr", api_pb2.DOUBLE, {"min": "0", "max": "1", "step": "1e-12"}),)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _error(call: object, request: object, timeout: float = 30) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=timeout)  # type: ignore[operator]
    return info.value


# -- grid sizes, numbers, details -----------------------------------------------------------------


def test_grid_size_is_arithmetic_and_capped() -> None:
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    settings = GridSearch.settings_type()
    space = SearchSpace((Parameter.integer("n", 1, 3), Parameter.double("lr", 0.0, 1.0, 1e-12)))
    started = time.perf_counter()
    with pytest.raises(UnsupportedSpaceError) as info:
        GridSearch.validate(space, objective, settings)
    assert time.perf_counter() - started < 0.1
    assert str(info.value) == (
        f"parameter lr: its grid has 1000000000001 values, and a grid's parameters may have "
        f"at most {MAX_GRID_VALUES} values together; use a larger step or another algorithm"
    )
    half = MAX_GRID_VALUES // 2
    at_limit = SearchSpace((Parameter.integer("a", 1, half), Parameter.integer("b", 1, half)))
    GridSearch.validate(at_limit, objective, settings)  # accepted: 2.5e9 points, 1e5 values
    over = SearchSpace((Parameter.integer("a", 1, half), Parameter.integer("b", 0, half)))
    with pytest.raises(UnsupportedSpaceError, match=f"parameter b: its grid has {half + 1} "):
        GridSearch.validate(over, objective, settings)


def test_grid_flood_request_is_invalid_argument_fast(server: Server) -> None:
    request = api_pb2.GetSuggestionsRequest(
        experiment=experiment("grid", params=FLOOD_PARAMS), current_request_number=1
    )
    assert len(request.SerializeToString()) < 100
    started = time.perf_counter()
    error = _error(server.stub.GetSuggestions, request)
    assert time.perf_counter() - started < 1.0
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "parameter lr: its grid has 1000000000001 values" in (error.details() or "")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            (("n", api_pb2.INT, {"min": "0", "max": "9" * 4000}),),
            "parameter n: '99999999999999999999'...'99999999999999999999' (4000 characters) "
            "is too large (beyond a double's range)",
        ),
        (
            (("x", api_pb2.DOUBLE, {"min": "-" + "9" * 4000, "max": "1"}),),
            "parameter x: '-9999999999999999999'...'99999999999999999999' (4001 characters) "
            "is too large (beyond a double's range)",
        ),
        (
            (("x", api_pb2.DOUBLE, {"min": "0", "max": "1", "step": "1" + "0" * 5000}),),
            "parameter x: '10000000000000000000'...'00000000000000000000' (5001 characters) "
            "is not a finite number",
        ),
        (
            (("x", api_pb2.DOUBLE, {"min": "-1e308", "max": "1e308", "step": "1e-300"}),),
            "parameter x: the range [-1e+308, 1e+308] holds too many steps of 1e-300 to count",
        ),
    ],
)
def test_huge_numbers_are_invalid_argument(server: Server, params: tuple, expected: str) -> None:
    request = api_pb2.GetSuggestionsRequest(
        experiment=experiment("random", params=params), current_request_number=1
    )
    error = _error(server.stub.GetSuggestions, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == expected
    validate = api_pb2.ValidateAlgorithmSettingsRequest(experiment=request.experiment)
    assert _error(server.stub.ValidateAlgorithmSettings, validate).code() is (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_huge_int_in_a_trial_is_invalid_argument(server: Server) -> None:
    request = api_pb2.GetSuggestionsRequest(experiment=experiment(), current_request_number=1)
    add_trial(request, {"lr": "0.01", "layers": "9" * 4000, "opt": "sgd"}, value="1.0")
    error = _error(server.stub.GetSuggestions, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("trial exp-0: layers: '9999")  # type: ignore[union-attr]


def test_ten_megabyte_name_gets_truncated_invalid_argument(server: Server) -> None:
    name = "n" * (10 * 2**20)
    params = ((name, api_pb2.DOUBLE, {"min": "oops", "max": "1"}),)
    request = api_pb2.GetSuggestionsRequest(
        experiment=experiment("random", params=params), current_request_number=1
    )
    error = _error(server.stub.GetSuggestions, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert len(details) <= MAX_DETAILS_CHARS
    assert details.startswith("parameter nnnn")
    assert details.endswith("characters, truncated]")
    # and an unknown 10 MB algorithm name
    request.experiment.spec.algorithm.algorithm_name = name
    request.experiment.spec.parameter_specs.parameters[0].name = "x"
    request.experiment.spec.parameter_specs.parameters[0].feasible_space.min = "0"
    error = _error(server.stub.GetSuggestions, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details() or "") <= MAX_DETAILS_CHARS


def _raw_request_with_trials(count: int) -> bytes:
    """A serialised GetSuggestionsRequest with ``count`` minimal trials (built as bytes: a
    million Trial protos would take longer to build than the server takes to refuse them)."""

    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    head = field(1, experiment().SerializeToString())
    trials = b"".join(field(2, field(1, b"t%d" % i)) for i in range(count))
    return head + trials + _varint(4 << 3) + _varint(1)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_a_million_trials_are_refused_within_the_deadline(server: Server) -> None:
    data = _raw_request_with_trials(1_000_000)
    call = server.channel.unary_unary(
        "/api.v1.beta1.Suggestion/GetSuggestions",
        request_serializer=None,
        response_deserializer=api_pb2.GetSuggestionsReply.FromString,
    )
    started = time.perf_counter()
    error = _error(call, data, timeout=10)
    elapsed = time.perf_counter() - started
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details() == (
        f"trials: the request carries 1000000 trials, above the limit of "
        f"{MAX_TRIALS_PER_REQUEST} per request"
    )
    assert elapsed < 5.0
    # the same through the full-parse path (a layout the incremental decoder does not take)
    reordered = _varint(4 << 3) + _varint(1) + data[: -len(_varint(4 << 3) + _varint(1))]
    assert _error(call, reordered, timeout=10).code() is grpc.StatusCode.INVALID_ARGUMENT


# -- handlers stop when their call ends ------------------------------------------------------


class _Spin(Algorithm):
    """Computes forever in Python; counts its iterations and notes when it stopped."""

    name = "spin"
    iterations = 0
    stopped_at: float | None = None
    started = threading.Event()

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        cls = type(self)
        cls.started.set()
        try:
            while True:
                cls.iterations += 1
        finally:
            cls.stopped_at = time.monotonic()


@pytest.fixture
def spin(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Spin]]:
    module = types.ModuleType("tunery_test_spin")
    module.Spin = _Spin  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tunery_test_spin", module)
    monkeypatch.setitem(REGISTRY, "spin", "tunery_test_spin:Spin")
    _Spin.iterations, _Spin.stopped_at = 0, None
    _Spin.started.clear()
    yield _Spin


def _assert_stopped(spin: type[_Spin], ended: float) -> None:
    deadline = time.monotonic() + 5
    while spin.stopped_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spin.stopped_at is not None, "the handler is still computing"
    assert spin.stopped_at - ended < 1.0
    count = spin.iterations
    time.sleep(0.3)
    assert spin.iterations == count  # no longer counting


def test_a_handler_stops_within_a_second_of_the_client_deadline(
    server: Server, spin: type[_Spin]
) -> None:
    request = api_pb2.GetSuggestionsRequest(
        experiment=experiment("spin"), current_request_number=1
    )
    error = _error(server.stub.GetSuggestions, request, timeout=0.5)
    ended = time.monotonic()
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    _assert_stopped(spin, ended)
    assert spin.iterations > 0
    # the server keeps serving, the interrupted experiment's state was dropped
    assert server.service.cached_experiments() == []
    reply = server.stub.GetSuggestions(
        api_pb2.GetSuggestionsRequest(experiment=experiment("random"), current_request_number=2),
        timeout=30,
    )
    assert len(reply.parameter_assignments) == 2


def test_a_handler_stops_within_a_second_of_the_client_cancelling(
    server: Server, spin: type[_Spin]
) -> None:
    request = api_pb2.GetSuggestionsRequest(
        experiment=experiment("spin"), current_request_number=1
    )
    future = server.stub.GetSuggestions.future(request, timeout=60)
    assert spin.started.wait(10)
    future.cancel()
    ended = time.monotonic()
    _assert_stopped(spin, ended)


# -- a real `tunery serve suggestion` -------------------------------------------------------------


def test_grid_flood_against_tunery_serve_suggestion() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", "serve", "suggestion", "--port", str(port)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = api_pb2_grpc.SuggestionStub(channel)
            results: list[grpc.StatusCode] = []

            def flood(worker: int) -> None:
                for i in range(25):
                    exp = experiment("grid", name=f"flood-{worker}-{i}", params=FLOOD_PARAMS)
                    request = api_pb2.GetSuggestionsRequest(
                        experiment=exp, current_request_number=1
                    )
                    try:
                        stub.GetSuggestions(request, timeout=5)
                    except grpc.RpcError as exc:
                        results.append(exc.code())  # type: ignore[attr-defined]

            started = time.perf_counter()
            threads = [threading.Thread(target=flood, args=(w,)) for w in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert time.perf_counter() - started < 20
            assert results == [grpc.StatusCode.INVALID_ARGUMENT] * 200
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            before = _cpu_seconds(proc.pid)
            time.sleep(1.0)
            assert _cpu_seconds(proc.pid) - before < 0.2  # idle: nothing left computing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_SPIN_SERVER = """
    import sys, time
    from suggestion.algorithms import REGISTRY
    from suggestion.algorithms.base import Algorithm
    from suggestion.server import serve

    class Spin(Algorithm):
        name = "spin"

        def suggest(self, request):
            print("computing", flush=True)
            if {sleep}:
                time.sleep(3600)  # one C call: cannot be interrupted
            while True:
                pass

    sys.modules["spinmod"] = sys.modules[__name__]
    REGISTRY["spin"] = "spinmod:Spin"
    serve("127.0.0.1", 0, grace={grace}, preload=False,
          on_ready=lambda port: print("listening on port", port, flush=True))
"""


@pytest.mark.parametrize(("sleep", "grace", "code"), [(False, 2.0, 0), (True, 1.0, 1)])
def test_sigterm_mid_handler_exits_within_the_grace_period(
    tmp_path: Path, sleep: bool, grace: float, code: int
) -> None:
    """A computing handler is interrupted when the grace period ends; one stuck in a call that
    cannot be interrupted is left behind by a hard exit one second later."""
    script = tmp_path / "spin_server.py"
    script.write_text(textwrap.dedent(_SPIN_SERVER.format(sleep=sleep, grace=grace)))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=_env(),
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
            stub = api_pb2_grpc.SuggestionStub(channel)
            request = api_pb2.GetSuggestionsRequest(
                experiment=experiment("spin"), current_request_number=1
            )
            future = stub.GetSuggestions.future(request, timeout=60)
            assert proc.stdout.readline() == "computing\n"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == code
            elapsed = time.monotonic() - sent
            assert grace - 0.5 < elapsed < grace + 1.5
            assert future.exception() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
