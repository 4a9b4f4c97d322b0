"""controller.runners.local with the warm pool: ``python -m tunery.sdk.trial_entry`` trials are
forked by a fork server (not started by the controller), yet stop, exit records, the log end
and re-attaching by a new runner work as for any trial."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from controller.runners import exit_record, proctree
from controller.runners.base import RunPhase, RunState, TrialLaunch
from controller.runners.local import LocalRunner
from controller.runners.warm import server_environment, warm_split

SOURCE = """
import time

def f(p):
    print("started", flush=True)
    time.sleep(p["x"])
    return 2.5
"""


def wait(runner: LocalRunner, handle: Any, timeout: float = 20.0) -> RunState:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = runner.poll(handle)
        if state.finished:
            return state
        time.sleep(0.02)
    raise AssertionError("trial did not finish")


def entry_launch(tmp_path: Path, seconds: float):
    spec = {
        "version": 1,
        "parameters": [{"name": "x", "type": "double"}],
        "objective_metric_name": "loss",
        "objective": {"kind": "source", "source": SOURCE, "name": "f"},
    }
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "tunery.sdk.trial_entry", str(path), f"x={seconds}"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "main", "command": argv}]}}},
    }
    return TrialLaunch(
        trial_name="t1",
        experiment_name="e",
        job=job,
        primary_container_name="main",
        log_path=tmp_path / "logs" / "t1.log",
        base_dir=tmp_path,
        env={"TUNERY_TRIAL_NAME": "t1"},
    )


def test_only_this_interpreter_running_a_warm_module_is_forked() -> None:
    entry = [sys.executable, "-m", "tunery.sdk.trial_entry", "spec.json"]
    assert warm_split([*entry, "x=1"]) == (entry, ["x=1"])
    assert warm_split(["python9", "-m", "tunery.sdk.trial_entry", "s", "x=1"]) is None
    assert warm_split([sys.executable, "-m", "somethingelse", "s"]) is None
    assert warm_split([sys.executable, "-c", "pass", "s"]) is None
    env = server_environment(
        {"PATH": "/bin", "TUNERY_TRIAL_NAME": "t", "CUDA_VISIBLE_DEVICES": "1"}
    )
    assert env == {"PATH": "/bin", proctree.TAG_ENV: "0" * 32}


def test_a_forked_trial_succeeds_with_its_exit_record(tmp_path: Path) -> None:
    runner = LocalRunner()
    try:
        handle = runner.start(entry_launch(tmp_path, 0.0))
        info = proctree.proc_info(handle["pid"])
        assert info is None or info.ppid != os.getpid()  # the server's child
        state = wait(runner, handle)
        assert state.phase is RunPhase.SUCCEEDED and state.exit_code == 0
        log = (tmp_path / "logs" / "t1.log").read_bytes()
        assert b"loss=2.5" in log
        assert exit_record.read_exit(handle["status_file"]) == exit_record.ExitRecord(0, len(log))
        assert exit_record.read_pid(handle["status_file"]) == handle["pid"]
    finally:
        runner.close()


def test_stop_ends_a_forked_trial_and_records_the_signal(tmp_path: Path) -> None:
    runner = LocalRunner()
    try:
        handle = runner.start(entry_launch(tmp_path, 60.0))
        deadline = time.monotonic() + 10
        while b"started" not in (tmp_path / "logs" / "t1.log").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert proctree.carries_tag(handle["pid"], handle["tag"])  # stamped into its environ
        assert runner.poll(handle).phase is RunPhase.RUNNING
        started = time.monotonic()
        runner.stop(handle, grace_seconds=5.0)
        assert time.monotonic() - started < 4
        state = runner.poll(handle)
        assert state.phase is RunPhase.FAILED and "SIGTERM" in state.message
        record = exit_record.read_exit(handle["status_file"])
        assert record is not None and record.status == 128 + signal.SIGTERM
    finally:
        runner.close()


def test_a_new_runner_reattaches_to_a_forked_trial(tmp_path: Path) -> None:
    first = LocalRunner()
    handle = first.start(entry_launch(tmp_path, 3.0))
    first.close()  # the controller leaves; the server stays until its trial ended
    second = LocalRunner()
    assert second.poll(handle).phase is RunPhase.RUNNING
    state = wait(second, handle)
    assert state.phase is RunPhase.SUCCEEDED and state.exit_code == 0


def test_a_trial_outlives_its_killed_server_and_then_is_lost(tmp_path: Path) -> None:
    runner = LocalRunner()
    try:
        handle = runner.start(entry_launch(tmp_path, 1.5))
        os.kill(handle["server"][0], signal.SIGKILL)
        time.sleep(0.2)
        assert runner.poll(handle).phase is RunPhase.RUNNING  # the trial itself still runs
        state = wait(runner, handle)
        assert state.phase is RunPhase.FAILED and state.reason == "Lost"
        # the next trial gets a new server
        handle2 = runner.start(entry_launch(tmp_path, 0.0))
        assert handle2["server"][0] != handle["server"][0]
        assert wait(runner, handle2).phase is RunPhase.SUCCEEDED
    finally:
        runner.close()


LEAVES_A_PROCESS = """
import subprocess, sys

def f(p):
    if p["x"]:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        print(f"leftover={child.pid}", flush=True)
    return 1.0
"""


def _alive(pid: int) -> bool:
    info = proctree.proc_info(pid)
    return info is not None and not info.zombie


def test_a_forked_trial_that_left_nothing_is_not_scanned_for_and_leftovers_still_end(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The fork server is a subreaper: a trial's leftovers become its children, so when a trial
    left none it says so and the runner skips the /proc scan; when it left one, the scan runs
    and ends it, as for any trial."""
    alone: list[bool] = []
    scans: list[str] = []
    exited = LocalRunner._warm_exited
    end_all = proctree.end_all

    def record(self: LocalRunner, pid: int, ticks: Any, status: Any, lone: bool = False) -> None:
        alone.append(lone)
        exited(self, pid, ticks, status, lone)

    def scan(trials: Any, **kwargs: Any) -> dict[str, int]:
        scans.extend(trial.tag for trial in trials)
        return end_all(trials, **kwargs)

    monkeypatch.setattr(LocalRunner, "_warm_exited", record)
    monkeypatch.setattr(proctree, "end_all", scan)  # the runner's scan for ended trials
    spec = {
        "version": 1,
        "parameters": [{"name": "x", "type": "int"}],
        "objective_metric_name": "loss",
        "objective": {"kind": "source", "source": LEAVES_A_PROCESS, "name": "f"},
    }
    (tmp_path / "trial.json").write_text(json.dumps(spec))
    runner = LocalRunner(on_exit=lambda: None)
    try:
        handles = []
        for name, leave in (("clean", 0), ("messy", 1)):
            argv = [sys.executable, "-m", "tunery.sdk.trial_entry", str(tmp_path / "trial.json")]
            container = {"name": "main", "command": [*argv, f"x={leave}"]}
            launch = TrialLaunch(
                trial_name=name,
                experiment_name="e",
                job={"spec": {"template": {"spec": {"containers": [container]}}}},
                primary_container_name="main",
                log_path=tmp_path / "logs" / f"{name}.log",
                base_dir=tmp_path,
                env={"TUNERY_TRIAL_NAME": name},
            )
            handle = runner.start(launch)
            assert wait(runner, handle).phase is RunPhase.SUCCEEDED
            handles.append(handle)
        clean, messy = handles
        assert alone == [True, False]
        assert clean["tag"] not in scans and messy["tag"] in scans
        log = (tmp_path / "logs" / "messy.log").read_text()
        leftover = int(log.split("leftover=")[1].split()[0])
        assert not _alive(leftover)
    finally:
        runner.close()
