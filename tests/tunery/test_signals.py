"""SIGTERM and SIGHUP to ``tunery run``, ``tunery resume`` and a ``tune()`` driver behave like
Ctrl-C: the trials are stopped, the experiment is marked interrupted (not Running) and stays
resumable, and ``tunery resume`` (or calling ``tune()`` again) finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from controller import status
from tunery.store import open_store
from tunery.trials import TrialCondition

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: sleepy
spec:
  objective:
    type: minimize
    objectiveMetricName: loss
  algorithm:
    algorithmName: random
  parallelTrialCount: 2
  maxTrialCount: 3
  parameters:
    - name: x
      parameterType: double
      feasibleSpace: {min: "0.1", max: "0.9"}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - name: x
        reference: x
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                image: python
                command: [sh, -c, 'sleep "$(cat nap)"; echo loss=${trialParameters.x}']
            restartPolicy: Never
"""

DRIVER = """\
import os
from tunery import search, tune

def objective(p):
    import os, time
    time.sleep(float(open("nap").read()))
    return p["x"]

tune(objective, {"x": search.double(0.1, 0.9)}, name="sleepy-tune", objective_type="minimize",
     max_trial_count=3, parallel_trial_count=2, db=os.environ["DB"], workdir=".tunery",
     verbose=False)
print("tune finished")
"""


def _env(tmp_path: Path, nap: str) -> dict[str, str]:
    # Trials get a built environment (no controller variables): the nap travels in a file of
    # the folder they run in.
    (tmp_path / "nap").write_text(nap)
    return {**os.environ, "PYTHONPATH": str(ROOT), "DB": _db(tmp_path)}


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/tunery.db"


def _wait_running(
    tmp_path: Path, name: str, proc: subprocess.Popen[str], count: int = 2
) -> list[int]:
    """The pids of the experiment's running trials, once ``count`` run."""
    store = open_store(_db(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                trials = store.list_trials(name)
            except Exception:  # not created yet
                trials = []
            pids = [
                t.runner_handle["pid"]
                for t in trials
                if t.condition is TrialCondition.RUNNING and t.runner_handle.get("pid")
            ]
            if len(pids) == count:
                return pids
            time.sleep(0.2)
    finally:
        store.close()
    raise AssertionError("the trials never ran")


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _assert_interrupted(tmp_path: Path, name: str, pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in pids), "a trial process outlived the interrupted run"
    store = open_store(_db(tmp_path))
    try:
        record = store.get_experiment(name)
        trials = store.list_trials(name)
    finally:
        store.close()
    assert not status.is_completed(record.status)
    assert status.is_interrupted(record.status)
    shown = status.shown_condition(record.status)
    assert shown is not None and shown["type"] == "Interrupted"
    running = [c for c in record.status["conditions"] if c["type"] == "Running"]
    assert running and running[0]["status"] == "False"  # Katib's condition types are kept
    assert {t.condition for t in trials} <= {TrialCondition.KILLED, TrialCondition.SUCCEEDED}
    assert all(t.condition is not TrialCondition.RUNNING for t in trials)


def _cli(tmp_path: Path, *args: str, nap: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", *args, "--db", _db(tmp_path)],
        cwd=tmp_path,
        env=_env(tmp_path, nap),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_to_tunery_run_interrupts_and_resume_finishes(
    tmp_path: Path, signum: signal.Signals
) -> None:
    (tmp_path / "experiment.yaml").write_text(EXPERIMENT)
    run = _cli(tmp_path, "run", "experiment.yaml", nap="60")
    pids = _wait_running(tmp_path, "sleepy", run)
    run.send_signal(signum)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, (out, err)
    assert f"interrupted by {signum.name}" in err
    assert "tunery resume sleepy" in err
    assert "Traceback" not in err
    _assert_interrupted(tmp_path, "sleepy", pids)

    listing = _cli(tmp_path, "list", nap="0")
    out, _ = listing.communicate(timeout=60)
    assert "Interrupted" in out and "Running" not in out

    resume = _cli(tmp_path, "resume", "sleepy", nap="0.1")
    out, err = resume.communicate(timeout=120)
    assert resume.returncode == 0, (out, err)
    assert "Succeeded" in out


def test_sigterm_to_tunery_resume_interrupts_it_too(tmp_path: Path) -> None:
    (tmp_path / "experiment.yaml").write_text(EXPERIMENT)
    run = _cli(tmp_path, "run", "experiment.yaml", nap="60")
    _wait_running(tmp_path, "sleepy", run)
    run.send_signal(signal.SIGINT)  # Ctrl-C: the same path
    run.communicate(timeout=60)
    assert run.returncode == 130
    resume = _cli(tmp_path, "resume", "sleepy", nap="60")
    pids = _wait_running(tmp_path, "sleepy", resume, count=1)  # killed trials count (Katib)
    resume.send_signal(signal.SIGTERM)
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 130, (out, err)
    _assert_interrupted(tmp_path, "sleepy", pids)


def test_sigterm_to_a_tune_driver_interrupts_and_tune_again_finishes(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    driver = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(tmp_path, "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = _wait_running(tmp_path, "sleepy-tune", driver)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=60)
    # tune() raises KeyboardInterrupt, as for Ctrl-C; uncaught, Python exits by SIGINT
    assert driver.returncode in (-signal.SIGINT, 130), (out, err)
    assert "KeyboardInterrupt" in err
    _assert_interrupted(tmp_path, "sleepy-tune", pids)

    again = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(tmp_path, "0.1"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert again.returncode == 0, again.stderr
    assert "tune finished" in again.stdout


def test_interrupted_is_katibs_running_condition_turned_false() -> None:
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    reason = status.ExperimentReason.RUNNING
    conditions = status.set_condition([], "Created", "ExperimentCreated", "created", now=t0)
    running = {
        "conditions": status.set_condition(
            conditions, "Running", reason, "running", now=t0 + dt.timedelta(seconds=1)
        )
    }
    marked = status.mark_interrupted(running, "stopped", t0 + dt.timedelta(seconds=2))
    assert status.is_interrupted(marked) and not status.is_completed(marked)
    assert {c["type"] for c in marked["conditions"]} == {"Created", "Running"}
    shown = status.shown_condition(marked)
    assert shown is not None
    assert (shown["type"], shown["reason"]) == ("Interrupted", "ExperimentInterrupted")
    resumed = status.set_condition(
        marked["conditions"], "Running", reason, "running", now=t0 + dt.timedelta(seconds=3)
    )
    assert not status.is_interrupted({"conditions": resumed})
    shown = status.shown_condition({"conditions": resumed})
    assert shown is not None and shown["type"] == "Running"
    # interrupted before it ever ran: a Running condition (False) is added
    only_created = status.mark_interrupted({"conditions": conditions}, "stopped", t0)
    assert status.is_interrupted(only_created)
