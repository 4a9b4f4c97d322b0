"""controller.runners.local: argv execution, exit codes, stop, deadline, re-attach, GPU env."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controller.runners.base import LaunchError, RunPhase, TrialLaunch
from controller.runners.local import LocalRunner


def launch(
    tmp_path: Path, command: list[str], args: list[str] | None = None, **kw: Any
) -> TrialLaunch:
    container: dict[str, Any] = {"name": "main", "command": command}
    if args is not None:
        container["args"] = args
    container.update(kw.pop("container", {}))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [container]}}, **kw.pop("spec", {})},
    }
    return TrialLaunch(
        trial_name="t1",
        experiment_name="e",
        job=job,
        primary_container_name="main",
        log_path=tmp_path / "logs" / "t1.log",
        base_dir=tmp_path,
        **kw,
    )


def wait(runner: LocalRunner, handle: Any, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = runner.poll(handle)
        if state.finished:
            return state
        time.sleep(0.02)
    raise AssertionError("trial did not finish")


def test_success_output_env_and_gpu_confinement(tmp_path: Path) -> None:
    code = (
        "import os; print('loss=0.5'); print(os.environ['KATIB_TRIAL_NAME'], "
        "repr(os.environ['CUDA_VISIBLE_DEVICES']), os.environ['OPT'], os.getcwd())"
    )
    runner = LocalRunner()
    handle = runner.start(
        launch(
            tmp_path,
            [sys.executable, "-c", code],
            env={"KATIB_TRIAL_NAME": "t1"},
            gpus=("1",),
            container={"env": [{"name": "OPT", "value": "adam"}], "workingDir": "."},
        )
    )
    state = wait(runner, handle)
    assert state.phase is RunPhase.SUCCEEDED and state.exit_code == 0
    assert (tmp_path / "logs" / "t1.log").read_text().splitlines() == [
        "loss=0.5",
        f"t1 '1' adam {tmp_path}",
    ]


def test_failure_reports_the_exit_code(tmp_path: Path) -> None:
    runner = LocalRunner()
    handle = runner.start(launch(tmp_path, [sys.executable, "-c", "import sys; sys.exit(3)"]))
    state = wait(runner, handle)
    assert state.phase is RunPhase.FAILED and state.exit_code == 3
    assert state.message == "exit code 3"


def test_stop_terminates_the_whole_process_group(tmp_path: Path) -> None:
    runner = LocalRunner()
    code = "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    handle = runner.start(launch(tmp_path, [sys.executable, "-c", code]))
    time.sleep(0.3)
    started = time.monotonic()
    runner.stop(handle, grace_seconds=2)
    assert time.monotonic() - started < 3
    state = wait(runner, handle)
    assert state.phase is RunPhase.FAILED and "signal" in state.message


def test_deadline_is_enforced(tmp_path: Path) -> None:
    runner = LocalRunner()
    handle = runner.start(launch(tmp_path, ["sleep", "30"], spec={"activeDeadlineSeconds": 0.3}))
    state = wait(runner, handle)
    assert state.reason == "DeadlineExceeded"
    assert "activeDeadlineSeconds=0.3" in state.message


def test_a_new_runner_reattaches_and_learns_the_exit_status(tmp_path: Path) -> None:
    first = LocalRunner()
    handle = first.start(
        launch(
            tmp_path, [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(4)"]
        )
    )
    second = LocalRunner()  # a restarted controller: not the parent of the process
    assert second.poll(handle).phase is RunPhase.RUNNING
    state = wait(second, handle)
    assert state.phase is RunPhase.FAILED and state.exit_code == 4
    first.poll(handle)  # reap


def test_values_with_shell_syntax_stay_single_arguments(tmp_path: Path) -> None:
    runner = LocalRunner()
    evil = "; touch PWNED $(touch PWNED2)"
    handle = runner.start(
        launch(tmp_path, [sys.executable, "-c", "import sys; print(sys.argv[1])"], [evil])
    )
    assert wait(runner, handle).phase is RunPhase.SUCCEEDED
    assert (tmp_path / "logs" / "t1.log").read_text().strip() == evil
    assert not list(tmp_path.glob("PWNED*"))


@pytest.mark.parametrize(
    ("command", "kw", "message"),
    [
        ([], {}, "has no command"),
        (["no-such-binary-xyz"], {}, "was not found on PATH"),
        (["./missing.sh"], {}, "is not an executable file"),
        (["true"], {"container": {"workingDir": "nope"}}, "workingDir"),
        (["true"], {"container": {"env": [{"name": "X", "valueFrom": {}}]}}, "valueFrom"),
        (["echo"], {"args": ["--v=a\0b"]}, "argument 1 '--v=a\\x00b' contains a NUL character"),
        (["true"], {"container": {"env": [{"name": "X", "value": "a\0"}]}}, "env 'X' contains"),
        (["echo"], {"args": ["x" * 200_000]}, "its command line is too long for the operating"),
    ],
)
def test_launch_errors_say_what_is_wrong(tmp_path: Path, command, kw, message) -> None:
    args = kw.pop("args", None)  # e.g. a parameter value with a NUL: a LaunchError, no crash
    with pytest.raises(LaunchError, match=re.escape(message)):
        LocalRunner().start(launch(tmp_path, command, args, **kw))


def test_a_process_start_that_fails_for_lack_of_resources_is_retried() -> None:
    import errno

    from controller.runners.base import RunnerUnavailableError
    from controller.runners.local import _start_error

    busy = _start_error(OSError(errno.EAGAIN, "Resource temporarily unavailable"), ["x"], {})
    assert isinstance(busy, RunnerUnavailableError) and not isinstance(busy, LaunchError)
    assert isinstance(_start_error(OSError(errno.E2BIG, "too long"), ["x"], {}), LaunchError)
