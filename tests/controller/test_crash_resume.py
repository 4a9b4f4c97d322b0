"""kill -9 of the controller at random moments, then resume: nothing lost, nothing twice.

Runs the real ``tunery`` command in subprocesses against one SQLite store. Trials print a
start marker and several metric lines with pauses, so kills land before, during and after
trials. After the final ``tunery resume`` the experiment must hold exactly maxTrialCount
trials, each started once, each succeeded one with every epoch's observation exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tunery.store import open_store
from tunery.store.errors import NotFoundError
from tunery.trials import TrialCondition

pytestmark = pytest.mark.slow

EPOCHS = 4
MAX_TRIALS = 8

TRIAL_SCRIPT = textwrap.dedent(
    f"""
    import os, sys, time
    x = float(sys.argv[1])
    print("start", os.environ["TUNERY_TRIAL_NAME"], flush=True)
    for epoch in range({EPOCHS}):
        time.sleep(0.15)
        print(f"epoch={{epoch}} loss={{(x - 0.3) ** 2 + 1 / (epoch + 1):.6f}}", flush=True)
    """
)

EXPERIMENT = f"""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: crashy
spec:
  objective:
    type: minimize
    objectiveMetricName: loss
  algorithm:
    algorithmName: random
  parallelTrialCount: 3
  maxTrialCount: {MAX_TRIALS}
  parameters:
    - name: x
      parameterType: double
      feasibleSpace: {{min: "0", max: "1"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {{name: x, reference: x}}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [{sys.executable!r}, trial.py, "${{trialParameters.x}}"]
"""


def tunery(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", *args, "--db", f"sqlite:///{cwd}/t.db"],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_trials(db: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the controller has created the experiment's first trials (or exited)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if db.exists():
            store = open_store(f"sqlite:///{db}")
            try:
                if store.list_trials("crashy"):
                    return
            except NotFoundError:  # not submitted yet
                pass
            finally:
                store.close()
        time.sleep(0.1)


def test_kill_9_at_random_moments_then_resume(tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        # `tunery run` of the same file resumes the experiment it created before
        proc = tunery("run", "exp.yaml", cwd=tmp_path)
        _wait_for_trials(tmp_path / "t.db", proc)  # a loaded machine may start slowly
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)  # the controller only: trials run on
        proc.wait()
        kills += 1
    assert kills >= 2, "the experiment finished before the controller could be killed twice"
    final = tunery("resume", "crashy", cwd=tmp_path)
    output, _ = final.communicate(timeout=120)
    assert final.returncode == 0, output.decode()

    store = open_store(f"sqlite:///{tmp_path}/t.db")
    trials = store.list_trials("crashy")
    assert len(trials) == MAX_TRIALS
    assert len({t.name for t in trials}) == MAX_TRIALS
    assert all(t.condition.is_terminal for t in trials)
    for trial in trials:
        log = Path(trial.runner_handle["log"]).read_text()
        assert log.count("start ") == 1, f"{trial.name} ran more than once:\n{log}"
        if trial.condition is TrialCondition.SUCCEEDED:
            observations = store.get_observations(trial.name, "loss")
            assert [o.step for o in observations] == list(range(EPOCHS)), trial.name
    status = store.get_experiment("crashy").status
    assert status["trials"] == MAX_TRIALS
    assert any(c["reason"] == "ExperimentMaxTrialsReached" for c in status["conditions"])
