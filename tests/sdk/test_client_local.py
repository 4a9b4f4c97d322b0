"""Client over the local store: Katib's method names, experiments run by a background process."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunery import Client, search, tune
from tunery.sdk import (
    AlreadyExistsError,
    DriverExitedError,
    ExperimentFailedError,
    InvalidArgumentError,
    InvalidExperimentError,
    NotFoundError,
    WaitTimeoutError,
)
from tunery.store import resolve_db_url
from tunery.trials import TrialCondition

pytestmark = pytest.mark.usefixtures("isolated_cwd")

TRAIN = """
import sys, time
lr, units = float(sys.argv[1]), int(sys.argv[2])
sleep = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
for epoch in range(3):
    print(f"epoch={epoch} loss={(lr - 0.05) ** 2 + units / 100 + (2 - epoch) / 1000}", flush=True)
    time.sleep(sleep)
"""


def _experiment(name: str = "cli-exp", *, sleep: float = 0.0, **spec: Any) -> dict[str, Any]:
    command = [sys.executable, "train.py", "${trialParameters.lr}", "${trialParameters.units}"]
    if sleep:
        command.append(str(sleep))
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {
                "algorithmName": "random",
                "algorithmSettings": [{"name": "random_state", "value": "3"}],
            },
            "maxTrialCount": 2,
            "parallelTrialCount": 2,
            "resumePolicy": "LongRunning",
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.01", "max": "0.1"},
                },
                {
                    "name": "units",
                    "parameterType": "int",
                    "feasibleSpace": {"min": "1", "max": "4"},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [
                    {"name": "lr", "reference": "lr"},
                    {"name": "units", "reference": "units"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "main", "image": "python", "command": command}
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
            **spec,
        },
    }


@pytest.fixture
def client(isolated_cwd: Path) -> Any:
    (isolated_cwd / "train.py").write_text(TRAIN)
    with Client() as c:
        yield c
    for folder in (isolated_cwd / ".tunery" / "experiments").glob("*"):
        c._local.engine.stop_driver(folder.name, timeout=10)  # never leave a driver behind


@pytest.mark.slow
def test_create_experiment_runs_it_in_the_background(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_experiment()))
    assert client.create_experiment(path) == "cli-exp"
    with pytest.raises(AlreadyExistsError, match="already exists"):
        client.create_experiment(path)
    assert client.is_experiment_created("cli-exp")
    document = client.wait_for_experiment_condition("cli-exp", timeout=60, polling_interval=0.1)
    assert document["status"]["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert client.is_experiment_succeeded("cli-exp") and not client.is_experiment_failed("cli-exp")
    assert not client.is_experiment_running("cli-exp")
    assert [e["metadata"]["name"] for e in client.list_experiments()] == ["cli-exp"]
    assert client.get_experiment("cli-exp")["metadata"]["creationTimestamp"]
    status = client.get_experiment("cli-exp")["status"]
    assert status["trialsSucceeded"] == 2 and "localBaseDir" not in status
    assert client.get_experiment_conditions("cli-exp")[0]["type"] == "Created"
    with pytest.raises(WaitTimeoutError, match="to be Restarting"):
        client.wait_for_experiment_condition(
            "cli-exp", expected_condition="Restarting", timeout=0.2, polling_interval=0.05
        )

    trials = client.list_trials("cli-exp")
    assert [t.condition for t in trials] == [TrialCondition.SUCCEEDED] * 2
    for trial in trials:
        assert type(trial.parameters["lr"]) is float and type(trial.parameters["units"]) is int
        assert trial.value == pytest.approx(
            (trial.parameters["lr"] - 0.05) ** 2 + trial.parameters["units"] / 100
        )
    best = client.get_optimal_hyperparameters("cli-exp")
    assert best is not None
    assert best.best_trial_name == min(trials, key=lambda t: t.value or 0).name
    assert best.parameter_assignments == client.get_trial(best.best_trial_name).parameters
    assert best.value == client.get_result("cli-exp").best_value

    observations = client.get_trial_metrics(trials[0].name)
    assert [o.step for o in observations] == [0, 1, 2]
    logs = list(client.get_trial_logs(trials[0].name))
    assert [line.split()[0] for line in logs] == ["epoch=0", "epoch=1", "epoch=2"]
    driver_log = (tmp_path / ".tunery/experiments/cli-exp/driver.log").read_text()
    assert '"condition": "Succeeded"' in driver_log


@pytest.mark.slow
def test_yaml_text_and_follow_logs(client: Client) -> None:
    name = client.create_experiment(yaml.safe_dump(_experiment("followed", sleep=0.2)))
    deadline = time.monotonic() + 30
    while not client.list_trials(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = client.list_trials(name)[0].name
    lines = list(client.get_trial_logs(first, follow=True, timeout=30))  # until the trial ends
    assert [line.split()[0] for line in lines] == ["epoch=0", "epoch=1", "epoch=2"]
    assert client.get_trial(first).completion_time is not None
    client.wait_for_experiment_condition(name, timeout=60, polling_interval=0.1)


@pytest.mark.slow
def test_edit_budget_restarts_a_finished_experiment(client: Client) -> None:
    client.create_experiment(_experiment())
    client.wait_for_experiment_condition("cli-exp", timeout=60, polling_interval=0.1)
    updated = client.edit_experiment_budget("cli-exp", max_trial_count=3)
    assert updated["spec"]["maxTrialCount"] == 3
    client.wait_for_experiment_condition("cli-exp", timeout=60, polling_interval=0.1)
    assert len(client.list_trials("cli-exp")) == 3
    with pytest.raises(InvalidArgumentError, match="at least one of"):
        client.edit_experiment_budget("cli-exp")
    with pytest.raises(InvalidExperimentError, match="parallelTrialCount"):
        client.edit_experiment_budget("cli-exp", parallel_trial_count=9)


def test_delete_stops_the_background_process_and_its_trials(client: Client) -> None:
    client.create_experiment(_experiment("doomed", sleep=30.0))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(t.condition == "Running" for t in client.list_trials("doomed")):
            break
        time.sleep(0.05)
    pid = client._local.driver_pid("doomed")
    assert pid is not None
    trials = client.list_trials("doomed")
    client.delete_experiment("doomed")
    assert client._local.driver_pid("doomed") is None
    with pytest.raises(NotFoundError, match="doomed"):
        client.get_experiment("doomed")
    for trial in trials:
        with pytest.raises(NotFoundError):
            client.get_trial(trial.name)
    assert not Path(".tunery/experiments/doomed").exists()
    with pytest.raises(NotFoundError):
        client.delete_experiment("doomed")


@pytest.mark.slow
def test_a_dead_background_process_is_reported_and_resumable(client: Client) -> None:
    client.create_experiment(_experiment("orphan", sleep=0.5))
    pid = client._local.driver_pid("orphan")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client._local.driver_pid("orphan") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(DriverExitedError, match="resume_experiment"):
        client.wait_for_experiment_condition("orphan", timeout=30, polling_interval=0.05)
    assert client.resume_experiment("orphan") is True
    client.wait_for_experiment_condition("orphan", timeout=60, polling_interval=0.1)
    assert client.resume_experiment("orphan") is False  # completed: nothing to resume


def test_waiting_for_a_failed_experiment(client: Client) -> None:
    document = _experiment("broken", maxFailedTrialCount=1)
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    container["command"] = [sys.executable, "-c", "raise SystemExit(3)", "${trialParameters.lr}"]
    container["command"].append("${trialParameters.units}")
    client.create_experiment(document)
    with pytest.raises(ExperimentFailedError, match="max failed count"):
        client.wait_for_experiment_condition("broken", timeout=60, polling_interval=0.1)
    client.wait_for_experiment_condition("broken", expected_condition="Failed", timeout=5)
    with pytest.raises(ExperimentFailedError):  # Katib: failing while waiting for another one
        client.wait_for_experiment_condition("broken", expected_condition="Restarting")


def test_unknown_names_are_not_found(client: Client) -> None:
    for call in (
        lambda: client.get_experiment("nope"),
        lambda: client.list_trials("nope"),
        lambda: client.get_trial("nope"),
        lambda: client.get_trial_metrics("nope"),
        lambda: client.get_trial_logs("nope"),  # raises before the first line
        lambda: client.get_optimal_hyperparameters("nope"),
        lambda: client.edit_experiment_budget("nope", max_trial_count=3),
        lambda: client.resume_experiment("nope"),
        lambda: client.delete_experiment("nope"),
    ):
        with pytest.raises(NotFoundError, match="nope") as raised:
            call()
        assert str(raised.value).endswith(f"(store: {resolve_db_url()})"), raised.value
    with pytest.raises(KeyError):  # NotFoundError is a KeyError too
        client.get_experiment("nope")


def test_an_invalid_document_is_rejected_with_every_problem(client: Client) -> None:
    document = _experiment()
    document["spec"]["parameters"][0]["feasibleSpace"]["min"] = "1"  # min > max
    document["spec"]["algorithm"]["algorithmName"] = "nope"
    with pytest.raises(InvalidExperimentError) as caught:
        client.create_experiment(document)
    paths = {e.path for e in caught.value.errors}
    assert {"spec.parameters[0].feasibleSpace.min", "spec.algorithm.algorithmName"} <= paths
    assert client.list_experiments() == []


def test_the_client_reads_what_tune_ran(client: Client) -> None:
    result = tune(
        lambda p: p["x"] ** 2,
        {"x": search.discrete([1, 2, 3])},
        name="from-tune",
        objective_type="minimize",
        algorithm_name="grid",
        max_trial_count=3,
        verbose=False,
    )
    assert client.get_result("from-tune") == result
    assert client.get_optimal_hyperparameters("from-tune").parameter_assignments == {"x": 1}
    assert client.namespace is None
    client.delete_experiment("from-tune")
    assert client.list_experiments() == []


def test_reads_do_not_create_a_store(isolated_cwd: Path) -> None:
    """Reading from a folder where nothing has run creates no ``.tunery/`` (issue 15 defect
    12): lists are empty, lookups are not found naming the store looked for."""
    with Client() as c:
        assert c.list_experiments() == []
        for call in (
            lambda: c.get_experiment("nope"),
            lambda: c.list_trials("nope"),
            lambda: c.get_result("nope"),
            lambda: c.get_trial("nope-1"),
            lambda: c.get_trial_metrics("nope-1"),
            lambda: c.get_trial_logs("nope-1"),
        ):
            with pytest.raises(NotFoundError, match="nope") as raised:
                call()
            assert "nothing has run with this store" in str(raised.value)
            assert str(raised.value).endswith(f"(store: {resolve_db_url()})"), raised.value
    assert not (isolated_cwd / ".tunery").exists()
