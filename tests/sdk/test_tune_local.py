"""tune() on this machine, end to end: trials are real processes, the store is SQLite in a temp
folder, suggestions and early stopping run in-process."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import tunery
from tunery import Client, search, tune
from tunery.sdk import (
    AlreadyExistsError,
    ExperimentFailedError,
    InvalidArgumentError,
    InvalidExperimentError,
    NoResultError,
    ObjectiveSerializationError,
    ReportMetricsError,
    TuneResult,
    report_metrics,
)
from tunery.trials import TrialCondition

pytestmark = pytest.mark.usefixtures("isolated_cwd")

QUIET = {"verbose": False}


def typed_objective(p: dict) -> dict:
    """Fails the trial when a value arrives with the wrong type."""
    expected = {"lr": float, "layers": int, "opt": str, "batch": int, "scale": float}
    for name, kind in expected.items():
        if type(p[name]) is not kind:
            raise TypeError(f"{name} arrived as {type(p[name]).__name__}: {p[name]!r}")
    loss = (p["lr"] - 0.05) ** 2 + 0.01 * p["layers"] + (p["opt"] == "sgd") + p["batch"] / 1e4
    return {"loss": loss * p["scale"], "acc": 1 - loss}


def test_tune_returns_the_best_parameters_as_real_types() -> None:
    result = tune(
        typed_objective,
        {
            "lr": search.double(0.01, 0.1),
            "layers": search.int(1, 4),
            "opt": search.categorical(["sgd", "adam"]),
            "batch": search.discrete([16, 32]),
            "scale": 1.0,
        },
        name="typed",
        objective_metric_name="loss",
        additional_metric_names=["acc"],
        objective_type="minimize",
        algorithm_name="random",
        algorithm_settings={"random_state": 1},
        max_trial_count=4,
        parallel_trial_count=2,
        **QUIET,
    )
    assert isinstance(result, TuneResult) and result.experiment_name == "typed"
    assert [t.condition for t in result.trials] == ["Succeeded"] * 4
    assert result.condition == "Succeeded" and result.reason == "ExperimentMaxTrialsReached"
    best = min(result.trials, key=lambda t: t.value or 0)
    assert result.best_trial == best.name and result.best_value == best.value
    assert result.best_parameters == best.parameters
    assert {k: type(v) for k, v in result.best_parameters.items()} == {
        "lr": float,
        "layers": int,
        "opt": str,
        "batch": int,
    }
    assert set(result.best_metrics) == {"loss", "acc"}
    for trial in result.trials:
        p = trial.parameters
        expected = (p["lr"] - 0.05) ** 2 + 0.01 * p["layers"] + (p["opt"] == "sgd")
        assert trial.value == pytest.approx(expected + p["batch"] / 1e4)
        assert trial.log_path and Path(trial.log_path).exists()
    assert Path(".tunery/tunery.db").exists()  # the default store, under the working folder
    shown = repr(result)  # the trials are counted, not printed
    assert shown.startswith("TuneResult(experiment_name='typed', best_trial=")
    assert f"best_value={result.best_value!r}" in shown and shown.endswith("trials=<4 trials>)")


def test_lambdas_and_closures_run_in_trial_processes() -> None:
    target = 0.7  # captured by value

    def make(offset: float):
        return lambda p: abs(p["x"] - target) + offset

    result = tune(
        make(1.0),
        {"x": search.discrete([0.5, 0.7, 0.9])},
        objective_metric_name="distance",
        objective_type="minimize",
        algorithm_name="grid",
        max_trial_count=3,
        parallel_trial_count=3,
        **QUIET,
    )
    assert result.experiment_name.startswith("tune-lambda-")
    assert result.best_parameters == {"x": 0.7}
    assert result.best_value == pytest.approx(1.0)
    assert sorted(t.value for t in result.trials) == pytest.approx([1.0, 1.2, 1.2])


def test_any_string_reaches_the_objective_intact() -> None:
    """The warm pool forks trials without exec: a NUL or a 200 KB value, which no command
    line can carry, still arrives as it was given."""
    values = ["a\0b", "y" * 200_000, "$(touch X) '\"`"]
    result = tune(
        lambda p: float(values.index(p["s"])),
        {"s": search.categorical(values)},
        algorithm_name="grid",
        max_trial_count=3,
        parallel_trial_count=3,
        **QUIET,
    )
    assert sorted(t.value for t in result.trials) == [0.0, 1.0, 2.0]
    assert all(t.condition is TrialCondition.SUCCEEDED for t in result.trials)


def crashing(p: dict) -> float:
    if p["x"] > -1:
        raise RuntimeError(f"exploded at x={p['x']}")
    return 0.0


def test_an_objective_exception_fails_the_trial_with_the_traceback_in_its_log() -> None:
    with pytest.raises(ExperimentFailedError) as caught:
        tune(
            crashing,
            {"x": search.double(0, 1)},
            name="crash",
            max_trial_count=3,
            parallel_trial_count=1,
            max_failed_trial_count=1,
            **QUIET,
        )
    message = str(caught.value)
    assert "experiment 'crash' failed" in message
    assert "RuntimeError: exploded at x=" in message  # the log tail of the failed trial
    assert 'raise RuntimeError(f"exploded at x={p' in message
    result = caught.value.result
    assert isinstance(result, TuneResult) and result.condition == "Failed"
    failed = result.trials_by_condition("Failed")
    assert len(failed) == 1 and "exit code 1" in failed[0].message
    with Client() as client:
        log = "\n".join(client.get_trial_logs(failed[0].name))
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: exploded at x=" in log


def silent(p: dict) -> None:
    print("training... no metrics here")


def test_an_objective_that_never_reports_leaves_metrics_unavailable() -> None:
    with pytest.raises(NoResultError) as caught:
        tune(
            silent,
            {"x": search.double(0, 1)},
            name="silent",
            objective_metric_name="loss",
            max_trial_count=2,
            parallel_trial_count=2,
            **QUIET,
        )
    assert "with no successful trial" in str(caught.value)
    assert "none reported the objective metric 'loss'" in str(caught.value)
    assert "tunery.report_metrics({'loss': value})" in str(caught.value)
    result = caught.value.result
    assert [t.condition for t in result.trials] == [TrialCondition.METRICS_UNAVAILABLE] * 2
    assert result.best_trial is None and result.best_parameters == {}


def always_raises(p: dict) -> float:
    import sklearn_is_not_installed_here  # noqa: F401  (the newcomer's base install)

    return 0.0


def test_fail_fast_stops_once_the_first_trials_all_failed() -> None:
    started = time.monotonic()
    with pytest.raises(ExperimentFailedError) as caught:
        tune(always_raises, {"x": search.double(0, 1)}, name="doomed", max_trial_count=12, **QUIET)
    message = str(caught.value)
    # forked trials fail fast enough that a step can see a 4th failure with the 3rd
    failed = int(re.search(r"the first (\d+) trials failed and none succeeded", message)[1])
    assert 3 <= failed <= 6
    assert "fail_fast=False runs every trial" in message
    assert "ModuleNotFoundError: No module named 'sklearn_is_not_installed_here'" in message
    assert "Client().delete_experiment('doomed')" in message
    result = caught.value.result
    assert result.condition == "Failed" and result.best_trial is None
    assert len(result.trials_by_condition("Failed")) == failed
    assert len(result.trials) <= failed + 3  # the running 3 killed at once: not 12 trials
    assert {t.condition for t in result.trials} <= {"Failed", "Killed"}
    assert time.monotonic() - started < 60


def test_fail_fast_can_be_turned_off_or_set() -> None:
    with pytest.raises(NoResultError) as caught:
        tune(
            always_raises, {"x": search.double(0, 1)}, max_trial_count=4, fail_fast=False, **QUIET
        )
    assert [t.condition for t in caught.value.result.trials] == ["Failed"] * 4
    with pytest.raises(ExperimentFailedError, match="the first trial failed"):
        tune(
            always_raises,
            {"x": search.double(0, 1)},
            max_trial_count=4,
            parallel_trial_count=1,
            fail_fast=1,
            **QUIET,
        )
    with pytest.raises(InvalidArgumentError, match="fail_fast must be"):
        tune(always_raises, {"x": search.double(0, 1)}, fail_fast=-2, **QUIET)


def reports_then_raises(p: dict) -> float:
    from tunery import report_metrics

    report_metrics({"objective": 100.0 if p["x"] == 1 else float(p["x"])})
    if p["x"] == 1:
        raise RuntimeError("crashed after reporting")
    return float(p["x"])


def test_a_trial_that_reported_and_then_crashed_is_never_best() -> None:
    result = tune(
        reports_then_raises,
        {"x": search.discrete([1, 2, 3])},
        algorithm_name="grid",
        max_trial_count=3,
        **QUIET,
    )
    by_x = {t.parameters["x"]: t for t in result.trials}
    assert by_x[1].condition == "Failed" and by_x[1].value == 100.0  # its metric is kept
    assert result.best_trial == by_x[3].name and result.best_value == 3.0
    with Client() as client:
        best = client.get_optimal_hyperparameters(result.experiment_name)
    assert best is not None and best.best_trial_name == by_x[3].name
    with pytest.raises(NoResultError, match="with no successful trial") as caught:
        tune(
            reports_then_raises,
            {"x": search.discrete([1])},
            algorithm_name="grid",
            max_trial_count=1,
            **QUIET,
        )
    assert caught.value.result.best_trial is None
    assert caught.value.result.reason == "ExperimentMaxTrialsReached"


def noisy(p: dict) -> float:
    return (p["x"] - 0.3) ** 2 + p["n"] / 100


def _trial_sets(
    seed: int, parallel: int, algorithm: str, count: int, **settings: int
) -> list[list[tuple]]:
    return [
        [
            (t.parameters["x"], t.parameters["n"])
            for t in tune(
                noisy,
                {"x": search.double(0, 1), "n": search.int(1, 9)},
                objective_type="minimize",
                algorithm_name=algorithm,
                algorithm_settings=settings,
                seed=seed,
                max_trial_count=count,
                parallel_trial_count=parallel,
                **QUIET,
            ).trials
        ]
        for _ in range(2)
    ]


def test_the_same_seed_gives_the_same_trials() -> None:
    # parallel 1: every trial, model phase included (TPE starts its model after 2 trials)
    first, second = _trial_sets(5, 1, "tpe", 4, n_startup_trials=2)
    assert first == second and len(set(first)) == 4
    # parallel 3: the startup phase is a function of (seed, trial index) whatever the timing
    first, second = _trial_sets(5, 3, "random", 6)
    assert first == second
    with pytest.raises(InvalidArgumentError, match="disagree"):
        tune(noisy, {"x": search.double(0, 1)}, seed=1, algorithm_settings={"random_state": 2})
    with pytest.raises(InvalidArgumentError, match="seed must be a non-negative integer"):
        tune(noisy, {"x": search.double(0, 1)}, seed=-1)


def reporting(p: dict) -> float:
    from tunery import report_metrics

    for epoch in range(3):
        report_metrics({"loss": p["x"] * (3 - epoch)}, step=epoch)
    print(f"acc={1 - p['x']}")
    return p["x"] * 0.5  # the final value continues the pushed steps


def test_reported_printed_and_returned_metrics_are_all_collected() -> None:
    result = tune(
        reporting,
        {"x": search.discrete([0.2])},
        name="reports",
        objective_metric_name="loss",
        additional_metric_names=["acc"],
        objective_type="minimize",
        algorithm_name="grid",
        max_trial_count=1,
        **QUIET,
    )
    (trial,) = result.trials
    with Client() as client:
        observations = client.get_trial_metrics(trial.name)
    loss = sorted((o.step, o.numeric) for o in observations if o.metric_name == "loss")
    assert loss == [(0, pytest.approx(0.6)), (1, pytest.approx(0.4)), (2, 0.2), (3, 0.1)]
    assert [o.numeric for o in observations if o.metric_name == "acc"] == [0.8]
    # the printed acc has no timestamp of its own: it gets the time it was read, not year 1
    assert trial.start_time is not None and trial.completion_time is not None
    for o in observations:
        assert trial.start_time - dt.timedelta(seconds=1) <= o.time
        assert o.time <= trial.completion_time + dt.timedelta(seconds=1)
    assert result.best_value == pytest.approx(0.1)  # min over all reports of the trial
    assert result.best_metrics["acc"] == pytest.approx(0.8)


def slow_objective(p: dict) -> float:
    import time

    time.sleep(p["sleep"])
    return p["x"]


def _interrupt_when_running(db: Path, main_thread: int) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(db) as conn:
                    running = conn.execute(
                        "SELECT count(*) FROM trials WHERE condition = 'Running'"
                    ).fetchone()[0]
            except sqlite3.Error:
                running = 0
            if running:
                time.sleep(0.3)  # let the process start for real
                signal.pthread_kill(main_thread, signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_experiment(tmp_path: Path) -> None:
    parameters = {"x": search.double(0, 1), "sleep": 30.0}
    options = {
        "name": "interrupted",
        "max_trial_count": 2,
        "parallel_trial_count": 1,
        "algorithm_name": "random",
        **QUIET,
    }
    watcher = _interrupt_when_running(tmp_path / ".tunery" / "tunery.db", threading.get_ident())
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        tune(slow_objective, parameters, **options)
    watcher.join()
    assert time.monotonic() - started < 25  # the 30 s trial was stopped, not waited for
    with Client() as client:
        document = client.get_experiment("interrupted")
        trials = client.list_trials("interrupted")
    assert not client.is_experiment_succeeded("interrupted")
    assert [t.condition for t in trials] == [TrialCondition.KILLED]
    assert "interrupted" in trials[0].message.lower()
    assert document["status"]["conditions"][-1]["type"] != "Failed"
    # the same call, now fast, resumes the experiment: the killed trial counts, one more runs
    result = tune(slow_objective, {**parameters, "sleep": 0.0}, **options)
    assert [t.condition for t in result.trials] == ["Killed", "Succeeded"]
    assert result.best_trial == result.trials[1].name


def test_a_larger_max_trial_count_continues_a_finished_experiment() -> None:
    options = {"name": "grow", "objective_type": "minimize", "algorithm_name": "random", **QUIET}
    first = tune(lambda p: p["x"], {"x": search.double(0, 1)}, max_trial_count=2, **options)
    assert len(first.trials) == 2
    again = tune(lambda p: p["x"], {"x": search.double(0, 1)}, max_trial_count=2, **options)
    assert [t.name for t in again.trials] == [t.name for t in first.trials]  # nothing re-run
    more = tune(lambda p: p["x"], {"x": search.double(0, 1)}, max_trial_count=3, **options)
    assert len(more.trials) == 3 and more.reason == "ExperimentMaxTrialsReached"
    payload = Path(".tunery/experiments/grow/objective.pkl").read_bytes()
    with pytest.raises(AlreadyExistsError, match="different spec"):
        tune(lambda p: -p["x"], {"x": search.double(0, 2)}, max_trial_count=3, **options)
    assert Path(".tunery/experiments/grow/objective.pkl").read_bytes() == payload  # untouched


def test_gpu_requests_confine_each_trial_to_its_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNERY_GPUS", "0,1")

    def which_gpu(p: dict) -> dict:
        import os
        import time

        time.sleep(0.3)  # overlap with the other trial
        return {"device": float(os.environ["CUDA_VISIBLE_DEVICES"]), "value": p["x"]}

    result = tune(
        which_gpu,
        {"x": search.double(0, 1)},
        objective_metric_name="value",
        additional_metric_names=["device"],
        resources_per_trial={"gpu": 1},
        max_trial_count=2,
        parallel_trial_count=2,
        algorithm_name="random",
        **QUIET,
    )
    devices = sorted(t.metrics["device"] for t in result.trials)
    assert devices == [0.0, 1.0]
    with pytest.raises(ExperimentFailedError, match="asks for 3 GPU"):
        tune(
            which_gpu,
            {"x": search.double(0, 1)},
            resources_per_trial={"gpu": 3},
            max_trial_count=1,
            **QUIET,
        )


def staged(p: dict) -> None:
    import time

    from tunery import report_metrics

    for step in range(12):
        report_metrics({"loss": p["x"] * (20 - step)}, step=step)
        time.sleep(0.05 if p["x"] < 1 else 0.25)


@pytest.mark.slow
def test_report_metrics_drives_median_stopping() -> None:
    result = tune(
        staged,
        {"x": search.discrete([0.1, 0.2, 9.0])},
        name="stopping",
        objective_metric_name="loss",
        objective_type="minimize",
        algorithm_name="grid",
        early_stopping={
            "algorithm_name": "medianstop",
            "algorithm_settings": {"min_trials_required": 2, "start_step": 2},
        },
        max_trial_count=3,
        parallel_trial_count=1,
        **QUIET,
    )
    by_x = {t.parameters["x"]: t for t in result.trials}
    assert by_x[0.1].condition == by_x[0.2].condition == "Succeeded"
    assert by_x[9.0].condition == "EarlyStopped"
    with Client() as client:
        steps = [o.step for o in client.get_trial_metrics(by_x[9.0].name)]
    assert max(steps) < 11  # stopped before its last step
    assert result.best_parameters == {"x": 0.1}


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"objective_type": "max"}, InvalidArgumentError, "objective_type"),
        ({"parameters": {"c": 1}}, InvalidArgumentError, "nothing to tune"),
        ({"algorithm_name": "simulated-annealing"}, InvalidExperimentError, "algorithmName"),
        ({"early_stopping": "hyperband"}, InvalidExperimentError, "earlyStopping"),
        ({"name": "Bad_Name"}, InvalidExperimentError, "metadata.name"),
        ({"max_trial_count": 0}, InvalidExperimentError, "maxTrialCount"),
        (
            {"algorithm_settings": {"gama": 0.3}},
            InvalidExperimentError,
            r'algorithmSettings\[0\]\.name: unknown setting gama .*did you mean "gamma"',
        ),
        (
            {
                "early_stopping": {
                    "algorithm_name": "medianstop",
                    "algorithm_settings": {"start_step": 0},
                }
            },
            InvalidExperimentError,
            r"earlyStopping\.algorithmSettings\[0\]\.value: start_step",
        ),
        ({"objective": 3}, InvalidArgumentError, "objective must be callable"),
    ],
)
def test_bad_arguments_fail_before_anything_runs(kwargs: dict, error: type, message: str) -> None:
    call = {"objective": lambda p: 1.0, "parameters": {"x": search.double(0, 1)}, **kwargs}
    with pytest.raises(error, match=message):
        tune(call.pop("objective"), call.pop("parameters"), **call, **QUIET)
    assert not Path(".tunery/experiments").exists() or not any(
        Path(".tunery/experiments").iterdir()
    )


def test_an_unpicklable_objective_is_reported() -> None:
    lock = threading.Lock()
    with pytest.raises(ObjectiveSerializationError, match="cannot pickle"):
        tune(lambda p: float(lock.locked()), {"x": search.double(0, 1)}, **QUIET)


def test_report_metrics_outside_a_trial() -> None:
    with pytest.raises(ReportMetricsError, match="inside a trial"):
        report_metrics({"loss": 0.1})


def test_report_metrics_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
    monkeypatch.setenv("TUNERY_METRICS_FILE", str(Path("m.jsonl").resolve()))
    with pytest.raises(InvalidArgumentError, match="not a number"):
        report_metrics({"loss": "abc"})
    with pytest.raises(InvalidArgumentError, match="step"):
        report_metrics({"loss": 0.1}, step=-1)
    report_metrics({"loss": 0.1}, step=2)
    assert '"step":2' in Path("m.jsonl").read_text()
    assert tunery.report_metrics is report_metrics
    assert os.environ["TUNERY_TRIAL_NAME"] == "t"


def test_tune_on_every_store_backend(db_url: str) -> None:
    result = tune(
        lambda p: p["x"],
        {"x": search.discrete([2, 1])},
        db=db_url,
        objective_type="minimize",
        algorithm_name="grid",
        max_trial_count=2,
        **QUIET,
    )
    assert result.best_parameters == {"x": 1} and result.best_value == 1.0
    with Client(db=db_url) as client:
        assert client.get_result(result.experiment_name) == result
        assert [e["metadata"]["name"] for e in client.list_experiments()] == [
            result.experiment_name
        ]
