"""Local trials: no controller secrets in their environment or log, owner-only files, and the
whole process tree (other process groups, setsid, double forks) ends with the trial, with no
metric collected from output written after the trial's end."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from controller.collecting import LogWatcher
from controller.runners import proctree
from controller.runners.base import RunPhase, TrialLaunch
from controller.runners.local import LocalRunner
from controller.runners.trial_env import trial_environment
from tunery.store import open_store
from tunery.store.base import TrialRecord
from tunery.trials import Objective, ObjectiveType, TrialCondition

ROOT = Path(__file__).resolve().parents[2]

# Forks a child into its own process group, which forks a setsid grandchild, which double-forks
# a daemon. Every descendant records its pid, prints "tick" while the main process lives and,
# 0.2 s after it ended, "loss=99" lines (output after the trial's end). The main process
# prints loss=0.5 then loss=0.25 and exits 0.
FAMILY = textwrap.dedent(
    """
    import os, sys, time
    pids = sys.argv[1]
    main = os.getpid()

    def main_alive():
        try:
            with open(f"/proc/{main}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    def descendant():
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\\n")
        while main_alive():
            print("tick", flush=True)
            time.sleep(0.02)
        time.sleep(0.2)
        while True:
            print("loss=99", flush=True)
            time.sleep(0.01)

    if os.fork() == 0:
        os.setpgid(0, 0)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                if os.fork() == 0:
                    descendant()
                os._exit(0)
            descendant()
        descendant()
    while not os.path.exists(pids) or len(open(pids).read().split()) < 3:
        time.sleep(0.01)
    print("loss=0.5", flush=True)
    time.sleep(0.2)
    print("loss=0.25", flush=True)
    """
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists at all: a zombie counts (it was not reaped)."""
    return proctree.proc_info(pid) is not None


def _pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _launch(tmp_path: Path, argv: list[str], **kw: Any) -> TrialLaunch:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "main", "command": argv}]}}},
    }
    log_path = tmp_path / "logs" / "t1.log"
    return TrialLaunch(
        trial_name="t1",
        experiment_name="e",
        job=job,
        primary_container_name="main",
        log_path=log_path,
        base_dir=tmp_path,
        env={"TUNERY_TRIAL_NAME": "t1", "TUNERY_METRICS_FILE": str(log_path) + ".push"},
        **kw,
    )


@pytest.fixture
def kill_leftovers() -> Iterator[list[int]]:
    """Pids a test started; whatever still runs at the end is killed (and fails no test)."""
    started: list[int] = []
    yield started
    for pid in started:
        info = proctree.proc_info(pid)
        if info is not None and not info.zombie:
            proctree.send(pid, info.start_ticks, proctree.signal.SIGKILL)


# -- the process tree ------------------------------------------------------------------------


def test_the_whole_tree_ends_with_the_main_process(tmp_path: Path, kill_leftovers) -> None:
    pids = tmp_path / "pids"
    exited = []
    runner = LocalRunner(on_exit=lambda: exited.append(True))
    handle = runner.start(_launch(tmp_path, [sys.executable, "-c", FAMILY, str(pids)]))
    _wait_until(lambda: len(_pids(pids)) == 3)
    kill_leftovers.extend(_pids(pids))
    _wait_until(lambda: bool(exited))  # on_exit comes as the leftovers are being killed
    assert runner.poll(handle).finished  # which reports the end once they are
    assert not [pid for pid in _pids(pids) if _alive(pid)]
    # the double fork's middle process exited by itself: reaped too, no zombie child left
    assert not [
        info
        for name in os.listdir("/proc")
        if name.isdigit()
        for info in [proctree.proc_info(int(name))]
        if info is not None
        and info.ppid == os.getpid()
        and {info.pid, info.pgid, info.sid} & set(_pids(pids))
    ]
    state = runner.poll(handle)
    assert state.phase is RunPhase.SUCCEEDED
    time.sleep(0.4)
    assert "loss=99" not in (tmp_path / "logs" / "t1.log").read_text()


def test_stop_ends_every_descendant(tmp_path: Path, kill_leftovers) -> None:
    pids = tmp_path / "pids"
    code = FAMILY.replace('print("loss=0.25", flush=True)', "time.sleep(60)")
    runner = LocalRunner()
    handle = runner.start(_launch(tmp_path, [sys.executable, "-c", code, str(pids)]))
    _wait_until(lambda: len(_pids(pids)) == 3)
    kill_leftovers.extend(_pids(pids))
    runner.stop(handle, grace_seconds=2)
    assert not [pid for pid in _pids(pids) if _alive(pid)]
    assert runner.poll(handle).phase is RunPhase.FAILED


def test_output_after_the_end_is_not_collected_even_when_nobody_watched(
    tmp_path: Path, kill_leftovers, sqlite_store
) -> None:
    """The controller was away when the trial ended: its leftovers wrote loss=99 for a while.
    A restarted controller kills them and collects only what came before the end."""
    pids = tmp_path / "pids"
    log = tmp_path / "logs" / "t1.log"
    first = LocalRunner()
    handle = first.start(_launch(tmp_path, [sys.executable, "-c", FAMILY, str(pids)]))
    _wait_until(lambda: len(_pids(pids)) == 3)
    kill_leftovers.extend(_pids(pids))
    _wait_until(lambda: log.read_text().count("loss=99") >= 5)

    sqlite_store.create_experiment("e", {"spec": {}})
    trial = sqlite_store.create_trial(
        TrialRecord("t1", "e", {}, TrialCondition.RUNNING, runner_handle=handle)
    )
    second = LocalRunner()  # a restarted controller
    state = second.poll(handle)
    assert state.phase is RunPhase.SUCCEEDED and state.exit_code == 0
    assert not [pid for pid in _pids(pids) if _alive(pid)]

    document = {"spec": {"objective": {"objectiveMetricName": "loss"}}}
    watcher = LogWatcher.factory(sqlite_store, document)(
        trial, Objective(ObjectiveType.MINIMIZE, "loss"), lambda: None, lambda _d: None
    )
    result = watcher.finish()
    values = [o.value for o in sqlite_store.get_observations("t1")]
    assert values == ["0.5", "0.25"]
    (loss,) = result.metrics
    assert loss["latest"] == "0.25"
    first.poll(handle)  # reap


def test_a_pid_file_someone_else_could_write_is_not_believed(tmp_path: Path) -> None:
    runner = LocalRunner()
    handle = dict(runner.start(_launch(tmp_path, ["sleep", "30"])))
    try:
        pid_file = Path(handle["status_file"] + ".pid")
        _wait_until(
            lambda: pid_file.exists() and pid_file.read_text().strip() == str(handle["pid"])
        )
        crashed = {k: v for k, v in handle.items() if k not in ("pid", "start_ticks")}
        assert LocalRunner().poll(crashed).phase is RunPhase.RUNNING  # trusted file
        pid_file.chmod(0o666)
        assert LocalRunner().poll(crashed).reason == "NotStarted"  # not trusted any more
    finally:
        runner.stop(handle, grace_seconds=1)


# -- the environment ---------------------------------------------------------------------------


def test_trial_environment_layers() -> None:
    controller = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TUNERY_DB_URL": "postgresql://u:secret@db/x",
        "AWS_SECRET_ACCESS_KEY": "k",
        "TUNERY_SUGGESTION_ENDPOINTS": "a=h:1",
    }
    env = trial_environment(
        controller,
        {"OPT": "adam", "PATH": "/opt/bin"},
        {"TUNERY_TRIAL_NAME": "t"},
        {"CUDA_VISIBLE_DEVICES": ""},
    )
    assert env == {
        "PATH": "/opt/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OPT": "adam",
        "TUNERY_TRIAL_NAME": "t",
        "CUDA_VISIBLE_DEVICES": "",
    }


SECRET_EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: env-check
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  parallelTrialCount: 2
  maxTrialCount: 3
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "0", max: "9"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, -c, SCRIPT, "${trialParameters.x}"]
                env: [{name: OPT, value: adam}]
"""

ENV_SCRIPT = (
    "import json, os, sys; print(json.dumps(dict(os.environ))); "
    "from tunery import report_metrics; report_metrics({'loss': float(sys.argv[1])})"
)


def test_no_database_password_reaches_a_trial(tmp_path: Path, password_db_url: str) -> None:
    password = make_url(password_db_url).password
    assert password
    script = ENV_SCRIPT
    (tmp_path / "exp.yaml").write_text(
        SECRET_EXPERIMENT.replace("PYTHON", sys.executable).replace("SCRIPT", json.dumps(script))
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TUNERY_DB_URL": password_db_url,
        "LANG": "C.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "aws-" + password,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tunery.cli", "run", "exp.yaml", "--db", password_db_url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert password not in done.stdout + done.stderr
    store = open_store(password_db_url)
    try:
        trials = store.list_trials("env-check")
    finally:
        store.close()
    assert len(trials) == 3 and all(t.condition is TrialCondition.SUCCEEDED for t in trials)
    logs = sorted((tmp_path / ".tunery" / "logs" / "env-check").iterdir())
    assert len([p for p in logs if p.suffix == ".log"]) == 3
    for path in logs:
        assert password not in path.read_text(errors="replace"), path
    for trial in trials:
        trial_env = json.loads(Path(trial.runner_handle["log"]).read_text().splitlines()[0])
        assert "TUNERY_DB_URL" not in trial_env and "AWS_SECRET_ACCESS_KEY" not in trial_env
        assert password not in json.dumps(trial_env)
        assert trial_env["PATH"] == os.environ["PATH"] and trial_env["HOME"]
        assert trial_env["LANG"] == "C.UTF-8" and trial_env["OPT"] == "adam"
        assert trial_env["TUNERY_TRIAL_NAME"] == trial_env["KATIB_TRIAL_NAME"] == trial.name
        assert trial_env["TUNERY_EXPERIMENT_NAME"] == "env-check"
        assert trial_env["TUNERY_METRICS_FILE"].endswith(".push.jsonl")
        assert trial_env[proctree.TAG_ENV] == trial.runner_handle["tag"]
        # /proc/<pid>/environ of a process holds its environment at start: check the wrapper's
        # record too (the trial process is gone; its env was printed above)


# -- files -------------------------------------------------------------------------------------

FAMILY_EXPERIMENT = SECRET_EXPERIMENT.replace("env-check", "family").replace(
    "maxTrialCount: 3", "maxTrialCount: 2"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tunery_run_under_umask_000(tmp_path: Path, kill_leftovers) -> None:
    """``tunery run`` of double-forking trials under umask 000: when it exits no descendant
    runs, nothing printed after a trial's end was stored, and every file it made is 0600 in
    0700 folders."""
    script = (
        FAMILY.replace("pids = sys.argv[1]", "pids = os.environ['TUNERY_TRIAL_NAME'] + '.pids'")
        + "\nprint('loss=' + sys.argv[1] + '.125', flush=True)\n"
    )
    (tmp_path / "exp.yaml").write_text(
        FAMILY_EXPERIMENT.replace("PYTHON", sys.executable).replace("SCRIPT", json.dumps(script))
    )
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_DB_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "tunery.cli", "run", "exp.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0,
    )
    pid_files = sorted(tmp_path.glob("*.pids"))
    for path in pid_files:
        kill_leftovers.extend(_pids(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(pid_files) == 2 and all(len(_pids(p)) == 3 for p in pid_files)
    assert not [pid for p in pid_files for pid in _pids(p) if _alive(pid)]

    state = tmp_path / ".tunery"
    store = open_store(f"sqlite:///{state / 'tunery.db'}")
    try:
        trials = store.list_trials("family")
        for trial in trials:
            values = [o.value for o in store.get_observations(trial.name)]
            x = trial.assignment["x"] if isinstance(trial.assignment, dict) else None
            assert "99" not in values, values
            assert values[:2] == ["0.5", "0.25"] and len(values) == 3, (x, values)
    finally:
        store.close()
    time.sleep(0.3)  # a survivor would print loss=99 by now
    for path in (state / "logs" / "family").iterdir():
        assert _mode(path) == 0o600, path
        assert "loss=99" not in path.read_text()
    for folder in (state, state / "logs", state / "logs" / "family"):
        assert _mode(folder) == 0o700, folder
    assert _mode(state / "tunery.db") == 0o600


def test_store_files_are_owner_only_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = open_store(f"sqlite:///{tmp_path / 'state' / 'deep' / 'tunery.db'}")
    finally:
        os.umask(old)
    try:
        store.create_experiment("e", {"spec": {}})
        files = sorted((tmp_path / "state" / "deep").iterdir())
        assert {p.name for p in files} >= {"tunery.db", "tunery.db-wal", "tunery.db-shm"}
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert _mode(tmp_path / "state") == _mode(tmp_path / "state" / "deep") == 0o700
    finally:
        store.close()


def test_trial_files_are_owner_only_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        runner = LocalRunner()
        handle = runner.start(_launch(tmp_path, [sys.executable, "-c", "print('loss=1')"]))
        _wait_until(lambda: runner.poll(handle).finished)
    finally:
        os.umask(old)
    logs = tmp_path / "logs"
    assert _mode(logs) == 0o700
    names = {p.name: _mode(p) for p in logs.iterdir()}
    assert names == {"t1.log": 0o600, "t1.exit": 0o600, "t1.exit.pid": 0o600, "t1.log.push": 0o600}
