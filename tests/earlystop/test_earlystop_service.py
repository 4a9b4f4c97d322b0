"""The EarlyStopping gRPC service, through a real server on port 0.

Observations come from a fake DBManager (a tiny servicer in this file) or from a SQLite store;
SetTrialStatus writes to the store.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from earlystop.base import InvalidSettingsError
from earlystop.server import create_earlystop_server
from earlystop.service import EarlyStoppingServicer, grpc_status
from tunery.api import api_pb2, api_pb2_grpc
from tunery.serving import create_server, service_name
from tunery.store.base import Store, TrialRecord
from tunery.trials import Observation, TrialCondition

ROOT = Path(__file__).resolve().parents[2]
SUCCEEDED = api_pb2.TrialStatus.SUCCEEDED
RUNNING = api_pb2.TrialStatus.RUNNING
FAILED = api_pb2.TrialStatus.FAILED

# loss curves reported by completed trials; running averages at step 2: 3, 2, 5, 8, 7 -> 5
CURVES = {
    "t-a": [4, 2, 3, 3],
    "t-b": [2, 2, 2, 2],
    "t-c": [6, 4, 2, 0],
    "t-d": [8, 8],
    "t-e": [7, 7, 7],
}


class FakeDBManager(api_pb2_grpc.DBManagerServicer):
    """Katib's DBManager.GetObservationLog over a dict, recording which trials were read."""

    def __init__(self, logs: dict[str, list[tuple[str, str]]]) -> None:
        self.logs = logs
        self.calls: list[str] = []

    def GetObservationLog(
        self, request: api_pb2.GetObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetObservationLogReply:
        self.calls.append(request.trial_name)
        entries = [
            api_pb2.MetricLog(
                time_stamp=f"2026-01-01T00:00:{i:02d}Z",
                metric=api_pb2.Metric(name=name, value=value),
            )
            for i, (name, value) in enumerate(self.logs.get(request.trial_name, []))
            if not request.metric_name or name == request.metric_name
        ]
        return api_pb2.GetObservationLogReply(
            observation_log=api_pb2.ObservationLog(metric_logs=entries)
        )


def loss_logs(values: Sequence[float]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for v in values:
        out += [("loss", str(v)), ("acc", "0.5")]
    return out


def experiment(
    min_trials: int = 3,
    start_step: int = 2,
    objective_type: int = api_pb2.MINIMIZE,
    metric: str = "loss",
    algorithm: str = "medianstop",
    name: str = "exp",
) -> api_pb2.Experiment:
    settings = [
        api_pb2.EarlyStoppingSetting(name="min_trials_required", value=str(min_trials)),
        api_pb2.EarlyStoppingSetting(name="start_step", value=str(start_step)),
    ]
    return api_pb2.Experiment(
        name=name,
        spec=api_pb2.ExperimentSpec(
            objective=api_pb2.ObjectiveSpec(type=objective_type, objective_metric_name=metric),
            early_stopping=api_pb2.EarlyStoppingSpec(
                algorithm_name=algorithm, algorithm_settings=settings
            ),
        ),
    )


def trial(name: str, condition: int = SUCCEEDED) -> api_pb2.Trial:
    return api_pb2.Trial(
        name=name,
        status=api_pb2.TrialStatus(condition=condition, completion_time="2026-01-01T01:00:00Z"),
    )


def rules_request(
    names: Sequence[str], address: str, **kwargs: Any
) -> api_pb2.GetEarlyStoppingRulesRequest:
    return api_pb2.GetEarlyStoppingRulesRequest(
        experiment=experiment(**kwargs),
        trials=[trial(n) for n in names],
        db_manager_address=address,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ELSEWHERE = "127.0.0.1:1"
"""A db_manager_address requests carry; the service ignores it (nothing listens there)."""


@pytest.fixture
def dbm_stub(dbmanager: tuple[FakeDBManager, str]) -> Iterator[api_pb2_grpc.EarlyStoppingStub]:
    """A stub of an EarlyStopping server configured with the fake DBManager."""
    server, port = create_earlystop_server(
        "127.0.0.1:0", dbmanager_address=dbmanager[1], dbmanager_timeout=5.0
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield api_pb2_grpc.EarlyStoppingStub(channel)
    channel.close()
    server.stop(0)


@pytest.fixture
def dbmanager() -> Iterator[tuple[FakeDBManager, str]]:
    fake = FakeDBManager({name: loss_logs(values) for name, values in CURVES.items()})

    def register(server: grpc.Server) -> str:
        api_pb2_grpc.add_DBManagerServicer_to_server(fake, server)
        return service_name("DBManager")

    server, port = create_server([register], "127.0.0.1:0", max_workers=4)
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(0)


def start(store: Store | None = None) -> tuple[grpc.Server, grpc.Channel]:
    server, port = create_earlystop_server("127.0.0.1:0", store, dbmanager_timeout=5.0)
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
def stub() -> Iterator[api_pb2_grpc.EarlyStoppingStub]:
    server, channel = start()
    yield api_pb2_grpc.EarlyStoppingStub(channel)
    channel.close()
    server.stop(0)


def call_error(method: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        method(request, timeout=10)
    return info.value


# -- health and validation -----------------------------------------------------------------------


def test_health_serving() -> None:
    server, channel = start()
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "api.v1.beta1.EarlyStopping"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        server.stop(0)


def test_health_follows_the_store(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunery import serving
    from tunery.store.errors import StoreUnavailableError

    monkeypatch.setattr(serving, "PROBE_INTERVAL_S", 0.0)
    down = False
    real_ping = sqlite_store.ping

    def ping() -> None:
        if down:
            raise StoreUnavailableError("database unavailable (test)")
        real_ping()

    monkeypatch.setattr(sqlite_store, "ping", ping)
    server, channel = start(sqlite_store)
    try:
        health = health_pb2_grpc.HealthStub(channel)

        def status() -> int:
            request = health_pb2.HealthCheckRequest(service="api.v1.beta1.EarlyStopping")
            return health.Check(request, timeout=10).status

        assert status() == health_pb2.HealthCheckResponse.SERVING
        down = True
        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
        down = False
        assert status() == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        server.stop(0)


def test_validate_accepts_good_settings(stub: api_pb2_grpc.EarlyStoppingStub) -> None:
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(
        early_stopping=experiment().spec.early_stopping
    )
    assert stub.ValidateEarlyStoppingSettings(request, timeout=10) is not None
    defaults = api_pb2.EarlyStoppingSpec(algorithm_name="medianstop")
    stub.ValidateEarlyStoppingSettings(
        api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=defaults), timeout=10
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            api_pb2.EarlyStoppingSpec(algorithm_name="medianstp"),
            "unknown algorithm name medianstp; available: asha, medianstop",
        ),
        (
            api_pb2.EarlyStoppingSpec(
                algorithm_name="medianstop",
                algorithm_settings=[api_pb2.EarlyStoppingSetting(name="warmup", value="1")],
            ),
            "unknown setting warmup for algorithm medianstop",
        ),
        (
            api_pb2.EarlyStoppingSpec(
                algorithm_name="medianstop",
                algorithm_settings=[api_pb2.EarlyStoppingSetting(name="start_step", value="0")],
            ),
            "start_step must be greater or equal than one (>=1)",
        ),
        (
            api_pb2.EarlyStoppingSpec(
                algorithm_name="medianstop",
                algorithm_settings=[
                    api_pb2.EarlyStoppingSetting(name="min_trials_required", value="x")
                ],
            ),
            "failed to validate min_trials_required(x): must be an integer",
        ),
    ],
)
def test_validate_rejects_with_katibs_messages(
    stub: api_pb2_grpc.EarlyStoppingStub, spec: api_pb2.EarlyStoppingSpec, message: str
) -> None:
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec)
    error = call_error(stub.ValidateEarlyStoppingSettings, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


# -- rules from a DBManager ----------------------------------------------------------------------


def test_rules_from_dbmanager_are_the_median_at_start_step(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    fake, _ = dbmanager
    fake.logs["t-empty"] = []  # a completed trial without logs is skipped, not a crash
    request = rules_request([*CURVES, "t-empty"], ELSEWHERE)
    request.trials.extend([trial("t-run", RUNNING), trial("t-fail", FAILED)])
    reply = dbm_stub.GetEarlyStoppingRules(request, timeout=10)
    expected = statistics.median([3.0, 2.0, 5.0, 8.0, 7.0])
    assert list(reply.early_stopping_rules) == [
        api_pb2.EarlyStoppingRule(
            name="loss", value=repr(expected), comparison=api_pb2.GREATER, start_step=2
        )
    ]
    assert float(reply.early_stopping_rules[0].value) == 5.0
    assert sorted(fake.calls) == sorted([*CURVES, "t-empty"])  # running/failed not read


def test_a_trial_listed_twice_counts_once(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    # t-b twice would make the median of 3, 2, 2, 5 = 2.5; once it is median(3, 2, 5) = 3
    request = rules_request(["t-a", "t-b", "t-b", "t-c"], ELSEWHERE)
    reply = dbm_stub.GetEarlyStoppingRules(request, timeout=10)
    assert float(reply.early_stopping_rules[0].value) == 3.0


def test_empty_trial_name_is_invalid_argument(stub: api_pb2_grpc.EarlyStoppingStub) -> None:
    error = call_error(stub.GetEarlyStoppingRules, rules_request(["t-a", ""], "127.0.0.1:1"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "trials[1].name is empty"


def test_rules_cache_completed_trials(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    fake, _ = dbmanager
    names = ["t-a", "t-b", "t-c"]
    first = dbm_stub.GetEarlyStoppingRules(rules_request(names, ELSEWHERE), timeout=10)
    assert float(first.early_stopping_rules[0].value) == 3.0
    assert len(fake.calls) == 3
    again = dbm_stub.GetEarlyStoppingRules(rules_request(names, ELSEWHERE), timeout=10)
    assert again == first and len(fake.calls) == 3
    grown = dbm_stub.GetEarlyStoppingRules(rules_request([*names, "t-d"], ELSEWHERE), timeout=10)
    assert float(grown.early_stopping_rules[0].value) == 4.0  # median of 3, 2, 5, 8
    assert fake.calls[3:] == ["t-d"]  # only the new trial was read


def test_no_rules_until_min_trials_required(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    reply = dbm_stub.GetEarlyStoppingRules(
        rules_request(["t-a", "t-b"], ELSEWHERE, min_trials=3), timeout=10
    )
    assert list(reply.early_stopping_rules) == []
    # t-d did not reach step 3: only 2 trials count there
    reply = dbm_stub.GetEarlyStoppingRules(
        rules_request(["t-a", "t-b", "t-d"], ELSEWHERE, start_step=3), timeout=10
    )
    assert list(reply.early_stopping_rules) == []


def test_maximize_gives_less(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    fake, _ = dbmanager
    fake.logs = {n: [("acc", str(v)) for v in (0.5, 0.7, 0.9)] for n in ("x", "y", "z")}
    request = rules_request(
        ["x", "y", "z"], ELSEWHERE, objective_type=api_pb2.MAXIMIZE, metric="acc", start_step=3
    )
    rule = dbm_stub.GetEarlyStoppingRules(request, timeout=10).early_stopping_rules[0]
    assert (rule.name, rule.comparison, rule.start_step) == ("acc", api_pb2.LESS, 3)
    assert float(rule.value) == pytest.approx(0.7)


def test_no_completed_trials_needs_no_dbmanager(stub: api_pb2_grpc.EarlyStoppingStub) -> None:
    request = rules_request([], "")
    request.trials.append(trial("t-run", RUNNING))
    assert list(stub.GetEarlyStoppingRules(request, timeout=10).early_stopping_rules) == []


@pytest.mark.parametrize(
    "address",
    ["katib-db-manager", "host:", ":6789", "host:port", "host:70000", "a:b:6789", "h st:1"],
)
def test_bad_configured_dbmanager_address_is_refused_at_startup(address: str) -> None:
    with pytest.raises(InvalidSettingsError) as info:
        create_earlystop_server("127.0.0.1:0", dbmanager_address=address)
    assert str(info.value) == (
        "the DBManager address must be host:port (e.g. katib-db-manager.kubeflow:6789), "
        f"got {address!r}"
    )


def test_without_store_or_dbmanager_rules_are_failed_precondition(
    stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    fake, address = dbmanager
    # the request names a reachable DBManager: the service still does not connect to it
    error = call_error(stub.GetEarlyStoppingRules, rules_request(["t-a"], address))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "no observation source" in (error.details() or "")
    _assert_names_real_options(error.details() or "")
    assert fake.calls == []


def test_the_request_cannot_choose_the_dbmanager(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    """Requests naming other addresses (or none) are all read from the configured one."""
    fake, _ = dbmanager
    for named in ("", "127.0.0.1:1", "169.254.169.254:80", "not an address"):
        reply = dbm_stub.GetEarlyStoppingRules(rules_request(list(CURVES), named), timeout=10)
        assert float(reply.early_stopping_rules[0].value) == 5.0
    assert sorted(set(fake.calls)) == sorted(CURVES)


def test_unreachable_dbmanager_is_unavailable_and_server_keeps_serving() -> None:
    address = f"127.0.0.1:{free_port()}"
    server, port = create_earlystop_server(
        "127.0.0.1:0", dbmanager_address=address, dbmanager_timeout=5.0
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = api_pb2_grpc.EarlyStoppingStub(channel)
    error = call_error(stub.GetEarlyStoppingRules, rules_request(["t-a"], ""))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert f"GetObservationLog for trial t-a at DBManager {address} failed" in (
        error.details() or ""
    )
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(
        early_stopping=experiment().spec.early_stopping
    )
    stub.ValidateEarlyStoppingSettings(request, timeout=10)
    channel.close()
    server.stop(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"objective_type": api_pb2.UNKNOWN},
            "experiment.spec.objective.type must be MINIMIZE or MAXIMIZE, got UNKNOWN",
        ),
        ({"metric": ""}, "experiment.spec.objective.objective_metric_name is empty"),
        ({"algorithm": "nope"}, "unknown algorithm name nope; available: asha, medianstop"),
        ({"start_step": 0}, "start_step must be greater or equal than one (>=1)"),
    ],
)
def test_bad_experiment_is_invalid_argument(
    stub: api_pb2_grpc.EarlyStoppingStub, kwargs: dict[str, Any], message: str
) -> None:
    error = call_error(stub.GetEarlyStoppingRules, rules_request([], "", **kwargs))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_set_trial_status_without_store_is_failed_precondition(
    stub: api_pb2_grpc.EarlyStoppingStub,
) -> None:
    error = call_error(stub.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name="t"))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "SetTrialStatus needs a store" in (error.details() or "")
    _assert_names_real_options(error.details() or "")


def _assert_names_real_options(details: str) -> None:
    """The options a message tells the operator to pass exist on the commands it names."""
    import inspect

    import earlystop.__main__
    from tunery.cli import main

    serve = main.commands["serve"].commands["earlystop"]  # type: ignore[attr-defined]
    assert "tunery serve earlystop --db URL" in details
    assert "--db" in {o for p in serve.params for o in p.opts}
    assert "python -m earlystop --db-url URL" in details
    assert '"--db-url"' in inspect.getsource(earlystop.__main__)


# -- with a store ---------------------------------------------------------------------------------


def seed(store: Store, experiment_name: str = "exp") -> None:
    store.create_experiment(experiment_name, {"metadata": {"name": experiment_name}})
    for name, values in CURVES.items():
        store.create_trial(TrialRecord(name, experiment_name, {"lr": "0.1"}))
        store.add_observations(
            name, [Observation.of("loss", v, step) for step, v in enumerate(values)]
        )
    store.create_trial(
        TrialRecord("t-run", experiment_name, {"lr": "0.2"}, condition=TrialCondition.RUNNING)
    )


@pytest.fixture
def store_stub(sqlite_store: Store) -> Iterator[tuple[api_pb2_grpc.EarlyStoppingStub, Store]]:
    seed(sqlite_store)
    server, channel = start(sqlite_store)
    yield api_pb2_grpc.EarlyStoppingStub(channel), sqlite_store
    channel.close()
    server.stop(0)


def test_set_trial_status_marks_early_stopped(
    store_stub: tuple[api_pb2_grpc.EarlyStoppingStub, Store],
) -> None:
    stub, store = store_stub
    stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t-run"), timeout=10)
    record = store.get_trial("t-run")
    assert record.condition is TrialCondition.EARLY_STOPPED
    assert (record.reason, record.message) == ("TrialEarlyStopped", "Trial is early stopped")
    assert record.completion_time is not None
    # idempotent
    stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t-run"), timeout=10)
    assert store.get_trial("t-run").condition is TrialCondition.EARLY_STOPPED


def test_set_trial_status_keeps_a_terminal_trial(
    store_stub: tuple[api_pb2_grpc.EarlyStoppingStub, Store],
) -> None:
    stub, store = store_stub
    store.update_trial("t-a", condition=TrialCondition.SUCCEEDED, reason="TrialSucceeded")
    stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t-a"), timeout=10)
    assert store.get_trial("t-a").condition is TrialCondition.SUCCEEDED


def test_set_trial_status_errors(
    store_stub: tuple[api_pb2_grpc.EarlyStoppingStub, Store],
) -> None:
    stub, _ = store_stub
    missing = call_error(stub.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name="nope"))
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert missing.details() == "trial nope not found"
    empty = call_error(stub.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name=""))
    assert empty.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert empty.details() == "trial_name is empty"


def test_rules_from_the_store_ignore_the_dbmanager_address(
    store_stub: tuple[api_pb2_grpc.EarlyStoppingStub, Store],
) -> None:
    stub, _ = store_stub
    unreachable = f"127.0.0.1:{free_port()}"
    reply = stub.GetEarlyStoppingRules(rules_request(list(CURVES), unreachable), timeout=10)
    assert float(reply.early_stopping_rules[0].value) == 5.0
    # a SUCCEEDED trial the store does not know has no logs: skipped
    reply = stub.GetEarlyStoppingRules(rules_request([*CURVES, "ghost"], unreachable), timeout=10)
    assert float(reply.early_stopping_rules[0].value) == 5.0


def test_store_backends_round_trip(store: Store) -> None:
    """Rules and SetTrialStatus against every configured database (servicer called directly)."""
    seed(store, "exp-es-backends")
    servicer = EarlyStoppingServicer(store)
    rules = servicer.rules_for(rules_request(list(CURVES), ""))
    assert [r.value for r in rules] == [5.0]
    assert servicer.set_trial_status("t-run") is TrialCondition.EARLY_STOPPED
    assert store.get_trial("t-run").reason == "TrialEarlyStopped"


class ExplodingStore:
    """get_observations fails once with an unexpected error, then works."""

    def __init__(self) -> None:
        self.failed = False

    def get_observations(self, trial_name: str, metric_name: str | None = None) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("boom")
        return [Observation.of("loss", v, s) for s, v in enumerate(CURVES[trial_name])]

    def ping(self) -> None:  # health probes the store: this one is up
        pass

    def for_trial(self, trial_name: str) -> ExplodingStore:  # one namespace: itself
        return self


def test_unexpected_error_is_internal_and_server_keeps_serving() -> None:
    server, channel = start(cast(Store, ExplodingStore()))
    try:
        stub = api_pb2_grpc.EarlyStoppingStub(channel)
        request = rules_request(["t-a", "t-b", "t-c"], "")
        error = call_error(stub.GetEarlyStoppingRules, request)
        assert error.code() is grpc.StatusCode.INTERNAL
        assert error.details() == "internal error: RuntimeError: boom"
        reply = stub.GetEarlyStoppingRules(request, timeout=10)
        assert float(reply.early_stopping_rules[0].value) == 3.0
    finally:
        channel.close()
        server.stop(0)


def test_grpc_status_mapping_is_total() -> None:
    from earlystop.base import ObservationsUnavailableError
    from tunery.store.errors import NotFoundError, StoreError, StoreUnavailableError

    assert grpc_status(NotFoundError("x"))[0] is grpc.StatusCode.NOT_FOUND
    assert grpc_status(StoreUnavailableError("x"))[0] is grpc.StatusCode.UNAVAILABLE
    assert grpc_status(ObservationsUnavailableError("x"))[0] is grpc.StatusCode.UNAVAILABLE
    assert grpc_status(StoreError("x")) == (grpc.StatusCode.INTERNAL, "x")
    assert grpc_status(ValueError("v")) == (
        grpc.StatusCode.INTERNAL,
        "internal error: ValueError: v",
    )


# -- the process -------------------------------------------------------------------------------


def test_python_m_earlystop_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "earlystop", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        request = api_pb2.ValidateEarlyStoppingSettingsRequest(
            early_stopping=experiment().spec.early_stopping
        )
        api_pb2_grpc.EarlyStoppingStub(channel).ValidateEarlyStoppingSettings(request, timeout=10)
        channel.close()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "EarlyStopping service listening on 127.0.0.1:" in output


def test_asha_rule_counts_early_stopped_trials(
    dbm_stub: api_pb2_grpc.EarlyStoppingStub, dbmanager: tuple[FakeDBManager, str]
) -> None:
    """asha's wire rule is its first decided rung (step 2 here); an EarlyStopped trial that
    reached it is a reference. Rung-2 best values: t-a 2, t-b 2, t-c 4, t-d 8, t-e 7, t-x 1
    -> the best half is cut at the median 3.0 (4.0 without t-x)."""
    fake, _ = dbmanager
    fake.logs["t-x"] = loss_logs([1, 1])
    settings = {"min_resource": "1", "reduction_factor": "2", "grace_period": "2"}
    request = rules_request([*CURVES], ELSEWHERE)
    request.experiment.spec.early_stopping.CopyFrom(
        api_pb2.EarlyStoppingSpec(
            algorithm_name="asha",
            algorithm_settings=[
                api_pb2.EarlyStoppingSetting(name=k, value=v) for k, v in settings.items()
            ],
        )
    )
    request.trials.extend(
        [trial("t-x", api_pb2.TrialStatus.EARLYSTOPPED), trial("t-run", RUNNING)]
    )
    reply = dbm_stub.GetEarlyStoppingRules(request, timeout=10)
    assert list(reply.early_stopping_rules) == [
        api_pb2.EarlyStoppingRule(
            name="loss", value=repr(3.0), comparison=api_pb2.GREATER, start_step=2
        )
    ]
    assert "t-x" in fake.calls and "t-run" not in fake.calls
