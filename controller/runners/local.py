"""Local trial runner: each trial's primary container runs as a process on this machine.

Used by the local reconciler (``tunery run``). The container's ``command`` + ``args`` run as an
argv list, never through a shell unless the template itself says ``sh -c`` (and then the
templating module has shell-quoted every substituted value). ``env`` and ``workingDir`` apply
(relative paths resolve against the Experiment YAML's folder); the image is ignored.

Each trial runs in its own session and process group, its stdout and stderr appended to the
trial's log file, which the collector tails. A tiny ``/bin/sh`` wrapper (argv passed as
``"$@"``, nothing interpolated) records the process id before the trial starts and its exit
status after it ends, so a controller that was killed and restarted re-attaches to trials
still running and learns how the others ended. ``stop`` sends SIGTERM to the group and SIGKILL
after the grace period. ``activeDeadlineSeconds`` (Job spec) is enforced in :meth:`poll`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.gpus import visible_devices_env
from controller.runners.base import (
    NOT_STARTED,
    Handle,
    LaunchError,
    RunPhase,
    RunState,
    TrialLaunch,
    TrialRunner,
)
from controller.templating import primary_container

log = logging.getLogger(__name__)

# $0 = exit-status file; "$@" = the trial's argv, expanded without any interpretation.
_WRAPPER = 'echo $$ > "$0.pid"; "$@"; status=$?; echo $status > "$0"; exit $status'


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (guards against pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces: fields after the last ')' are fixed
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start_ticks: int | None) -> bool:
    ticks = _proc_start_ticks(pid)
    if ticks is None:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    if state == "Z":  # zombie: exited, not yet reaped
        return False
    return start_ticks is None or ticks == start_ticks


def _describe_exit(code: int) -> tuple[RunPhase, str, str]:
    if code == 0:
        return RunPhase.SUCCEEDED, "Completed", "exit code 0"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return RunPhase.FAILED, "Error", f"killed by signal {name}"
    if code == 127:
        return RunPhase.FAILED, "Error", "exit code 127 (command not found)"
    return RunPhase.FAILED, "Error", f"exit code {code}"


class LocalRunner(TrialRunner):
    """Runs trials as local processes."""

    def __init__(self, *, on_exit: Callable[[], None] | None = None) -> None:
        """``on_exit`` is called (from a watcher thread) whenever a started trial exits."""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._on_exit = on_exit

    # -- launching ----------------------------------------------------------------------------

    def prepare_handle(self, launch: TrialLaunch) -> Handle:
        status_file = launch.log_path.with_suffix(".exit")
        deadline = (launch.job.get("spec") or {}).get("activeDeadlineSeconds")
        return {
            "log": str(launch.log_path),
            "status_file": str(status_file),
            "gpus": list(launch.gpus),
            "deadline_seconds": deadline,
        }

    def command_for(self, launch: TrialLaunch) -> tuple[list[str], dict[str, str], Path]:
        """The argv, environment and working directory of the trial's primary container.

        Raises:
            LaunchError: no command, an unsupported env entry, or a missing executable.
        """
        try:
            container = primary_container(launch.job, launch.primary_container_name)
        except ValueError as exc:
            raise LaunchError(str(exc)) from None
        argv = [str(x) for x in (container.get("command") or [])]
        argv += [str(x) for x in (container.get("args") or [])]
        if not argv or not (container.get("command") or []):
            raise LaunchError(
                f"container {launch.primary_container_name!r} has no command: the local runner "
                "cannot run an image's entrypoint; set command (and args) in the trialTemplate"
            )
        env = dict(os.environ)
        for entry in container.get("env") or []:
            if "value" not in entry and "valueFrom" in entry:
                raise LaunchError(
                    f"env {entry.get('name')!r}: valueFrom is not supported by the local runner"
                )
            env[str(entry["name"])] = str(entry.get("value", ""))
        env.update(launch.env)
        env.update(visible_devices_env(launch.gpus))
        workdir = Path(container.get("workingDir") or ".")
        cwd = workdir if workdir.is_absolute() else launch.base_dir / workdir
        if not cwd.is_dir():
            raise LaunchError(f"workingDir {str(cwd)!r} does not exist")
        executable = argv[0]
        if os.sep in executable:
            resolved = executable if Path(executable).is_absolute() else str(cwd / executable)
            if not os.access(resolved, os.X_OK):
                raise LaunchError(f"command {executable!r} is not an executable file in {cwd}")
        elif shutil.which(executable, path=env.get("PATH")) is None:
            raise LaunchError(f"command {executable!r} was not found on PATH")
        return argv, env, cwd

    def start(self, launch: TrialLaunch) -> Handle:
        argv, env, cwd = self.command_for(launch)
        handle = dict(self.prepare_handle(launch))
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        status_file = Path(handle["status_file"])
        status_file.unlink(missing_ok=True)
        with open(launch.log_path, "ab") as log_file:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _WRAPPER, str(status_file), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        with self._lock:
            self._procs[proc.pid] = proc
        if self._on_exit is not None:
            threading.Thread(
                target=self._notify_exit, args=(proc,), name=f"exit-{proc.pid}", daemon=True
            ).start()
        handle.update(
            pid=proc.pid, start_ticks=_proc_start_ticks(proc.pid), started_at=time.time()
        )
        return handle

    def _notify_exit(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        assert self._on_exit is not None
        self._on_exit()

    # -- observing ----------------------------------------------------------------------------

    def _recorded_status(self, handle: Handle) -> int | None:
        try:
            return int(Path(handle["status_file"]).read_text().strip())
        except (OSError, ValueError, KeyError):
            return None

    def _pid(self, handle: Handle) -> int | None:
        if handle.get("pid"):
            return int(handle["pid"])
        try:  # crashed between start and recording the handle: the wrapper wrote its pid
            return int(Path(str(handle["status_file"]) + ".pid").read_text().strip())
        except (OSError, ValueError, KeyError):
            return None

    def poll(self, handle: Handle) -> RunState:
        pid = self._pid(handle)
        if pid is None:
            return RunState(RunPhase.FAILED, NOT_STARTED, "the trial process never started")
        with self._lock:
            proc = self._procs.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return self._check_deadline(handle)
            with self._lock:
                self._procs.pop(pid, None)
            return self._finished(code)
        if _alive(pid, handle.get("start_ticks")):
            return self._check_deadline(handle)
        return self._finished(self._recorded_status(handle))

    @staticmethod
    def _finished(code: int | None) -> RunState:
        if code is None:
            return RunState(
                RunPhase.FAILED,
                "Lost",
                "the trial process ended while the controller was not watching and left no "
                "exit status (killed with its process group?)",
            )
        phase, reason, message = _describe_exit(code)
        return RunState(phase, reason, message, exit_code=code)

    def _check_deadline(self, handle: Handle) -> RunState:
        deadline = handle.get("deadline_seconds")
        started = handle.get("started_at")
        if deadline is not None and started is not None and time.time() - started > deadline:
            self.stop(handle, grace_seconds=5.0)
            return RunState(
                RunPhase.FAILED,
                "DeadlineExceeded",
                f"the trial ran longer than activeDeadlineSeconds={deadline} and was stopped",
            )
        return RunState(RunPhase.RUNNING)

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_seconds: float = 10.0) -> None:
        pid = self._pid(handle)
        if pid is None:
            return
        with self._lock:
            proc = self._procs.get(pid)
        if not _alive(pid, handle.get("start_ticks")) and proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and not _alive(pid, handle.get("start_ticks")):
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # also reaps stragglers that left the leader
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def log_path(self, handle: Mapping[str, Any]) -> Path:
        return Path(handle["log"])
