"""Local trial runner: each trial's primary container runs as a process on this machine.

Used by the local reconciler (``tunery run``). The container's ``command`` + ``args`` run as an
argv list, never through a shell unless the template itself says ``sh -c`` (and then the
templating module has shell-quoted every substituted value). ``env`` and ``workingDir`` apply
(relative paths resolve against the Experiment YAML's folder); the image is ignored. The
trial's environment is built by :mod:`controller.runners.trial_env`: it does not inherit the
controller's (no ``TUNERY_DB_URL``, no credentials).

Each trial runs in its own session and process group, its stdout and stderr appended to the
trial's log file, which the collector tails. A tiny ``/bin/sh`` wrapper
(:mod:`controller.runners.exit_record`) records the process id before the trial starts and its
exit status and log end after it ends, so a controller that was killed and restarted
re-attaches to trials still running and learns how the others ended. The log is created 0600
in 0700 folders (:mod:`tunery.files`); the wrapper creates the pid, exit and metrics files under
umask 077 and runs the trial with the controller's umask.

A trial's whole process tree ends with it (:mod:`controller.runners.proctree`): when its main
process exits, every process still carrying its tag (forked into other process groups,
``setsid``, double-forked) is killed at once, as a container's processes end with its main
process; ``stop`` sends SIGTERM to all of them and SIGKILL after the grace period. A pid is
signalled only when the process carries the trial's tag (or is the recorded process, checked
by start time), never on the word of a file someone else could write.
``activeDeadlineSeconds`` (Job spec) is enforced in :meth:`poll`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
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

from controller import checkpoints, paths
from controller.checkpoints import CheckpointPlan
from controller.gpus import visible_devices_env
from controller.runners import exit_record, proctree
from controller.runners.base import (
    NOT_STARTED,
    Handle,
    LaunchError,
    RunnerError,
    RunnerUnavailableError,
    RunPhase,
    RunState,
    TrialLaunch,
    TrialRunner,
)
from controller.runners.reaper import Reaper
from controller.runners.trial_env import trial_environment
from controller.runners.warm import WarmPool
from controller.templating import primary_container
from tunery.files import FILE_MODE, private_dir

log = logging.getLogger(__name__)


def _umask() -> str:
    """This process's umask, in octal (the trial runs with it; read, not set: thread-safe)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return line.split()[1].decode()
    except OSError:
        pass
    return "022"


def open_log(path: Path) -> int:
    """Open the trial's log for appending, creating it 0600 whatever the umask."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, os.O_WRONLY | os.O_APPEND)
    os.fchmod(fd, FILE_MODE)
    return fd


def _alive(pid: int, handle: Handle) -> bool:
    """Whether ``pid`` is the trial's live wrapper (checked by start time or by tag)."""
    info = proctree.proc_info(pid)
    if info is None or info.zombie:  # zombie: exited, not yet reaped
        return False
    if handle.get("start_ticks") is not None:
        return info.start_ticks == handle["start_ticks"]
    tag = handle.get("tag")
    return proctree.carries_tag(pid, tag) if tag else True


def _server_alive(handle: Handle) -> bool:
    """Whether the fork server that forked this trial (if one did) still runs."""
    server = handle.get("server")
    if not server or not handle.get("status_file"):
        return False
    info = proctree.proc_info(int(server[0]))
    return info is not None and not info.zombie and info.start_ticks == server[1]


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


def _start_error(exc: OSError, argv: list[str], env: dict[str, str]) -> RunnerError:
    """What a failed process start means for the trial: E2BIG (a value too long for a
    command line) fails it; anything else (out of processes or memory) is retried."""
    if exc.errno == errno.E2BIG:
        longest = max(len(a) for a in argv)
        return LaunchError(
            f"its command line is too long for the operating system ({exc.strerror}: "
            f"{len(argv)} arguments, the longest {longest} characters, "
            f"{sum(len(k) + len(v) for k, v in env.items())} characters of environment); "
            "pass long values through a file instead"
        )
    return RunnerUnavailableError(f"cannot start the trial's process now: {exc}")


def _refuse_nul(argv: list[str], env: dict[str, str]) -> None:
    """A NUL character cannot be passed to a program it executes (in its arguments or
    environment); a parameter value holding one fails its trial, naming where. (A warm-pool
    trial is forked, not executed, and receives such a value intact.)

    Raises:
        LaunchError: the first place that holds a NUL character.
    """
    for i, arg in enumerate(argv):
        if "\0" in arg:
            where = "command" if i == 0 else f"argument {i}"
            raise LaunchError(
                f"{where} {arg!r} contains a NUL character, which no program "
                "can receive (a parameter value holding one cannot be passed)"
            )
    for name, value in env.items():
        if "\0" in name or "\0" in value:
            raise LaunchError(
                f"env {name!r} contains a NUL character, which no program can receive"
            )


class LocalRunner(TrialRunner):
    """Runs trials as local processes."""

    def __init__(self, *, on_exit: Callable[[], None] | None = None) -> None:
        """``on_exit`` is called (from the reaper's or a fork server's reader thread: one per
        runner or experiment, never one per trial) whenever a started trial exits, as the rest
        of its process tree is being killed: the caller may wake at once, and the
        :meth:`poll` that reports the trial finished returns only once that tree has ended."""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._prepared: dict[str, Handle] = {}
        self._lock = threading.Lock()
        self._tree_locks: dict[str, threading.Lock] = {}
        self._trees_ended: set[str] = set()
        self._on_exit = on_exit
        # trials forked by a warm pool server: (pid, start ticks) -> handle while running,
        # -> exit status once exited and not yet polled
        self._warm_running: dict[tuple[int, int | None], Handle] = {}
        self._warm_exits: dict[tuple[int, int | None], int] = {}
        self._warm = WarmPool(self._warm_exited)
        self._reaper = Reaper(self._processes_exited) if on_exit is not None else None
        proctree.become_subreaper()  # orphans of trials re-parent to us: reaped when killed

    # -- launching ----------------------------------------------------------------------------

    def prepare_handle(self, launch: TrialLaunch) -> Handle:
        status_file = launch.log_path.with_suffix(".exit")
        deadline = (launch.job.get("spec") or {}).get("activeDeadlineSeconds")
        handle = {
            "log": str(launch.log_path),
            "status_file": str(status_file),
            "gpus": list(launch.gpus),
            "deadline_seconds": deadline,
            "tag": proctree.new_tag(),
            "boot": proctree.boot_id(),
        }
        with self._lock:  # start() uses the same tag as the handle recorded before it
            self._prepared[str(launch.log_path)] = handle
        return handle

    def command_for(
        self, launch: TrialLaunch, tag: str = ""
    ) -> tuple[list[str], dict[str, str], Path]:
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
        container_env: dict[str, str] = {}
        for entry in container.get("env") or []:
            if "value" not in entry and "valueFrom" in entry:
                raise LaunchError(
                    f"env {entry.get('name')!r}: valueFrom is not supported by the local runner"
                )
            container_env[str(entry["name"])] = str(entry.get("value", ""))
        tunery_env = dict(launch.env)
        if tag:
            tunery_env[proctree.TAG_ENV] = tag
        env = trial_environment(
            os.environ, container_env, tunery_env, visible_devices_env(launch.gpus)
        )
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
        with self._lock:
            prepared = self._prepared.pop(str(launch.log_path), None)
        handle = dict(prepared or self.prepare_handle(launch))
        with self._lock:
            self._prepared.pop(str(launch.log_path), None)
        if launch.checkpoint is not None:
            launch = _with_checkpoint(launch, launch.checkpoint)
        argv, env, cwd = self.command_for(launch, handle["tag"])
        status_file = Path(handle["status_file"])
        status_file.unlink(missing_ok=True)  # a stale record would end the new run's output
        private_dir(launch.log_path.parent)
        log_fd = open_log(launch.log_path)
        umask = _umask()
        try:
            log_start = os.fstat(log_fd).st_size
            warm = self._warm.start(argv, env, cwd, int(umask, 8), log_fd, str(status_file))
            if warm is not None:
                handle.update(
                    pid=warm.pid,
                    start_ticks=warm.start_ticks,
                    started_at=time.time(),
                    log_start=log_start,
                    server=[warm.server_pid, warm.server_ticks],
                )
                self._watch_warm(handle)
                return handle
            _refuse_nul(argv, env)
            try:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", exit_record.WRAPPER, str(status_file), umask, *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise _start_error(exc, argv, env) from None
        finally:
            os.close(log_fd)
        info = proctree.proc_info(proc.pid)
        handle.update(
            pid=proc.pid,
            start_ticks=info.start_ticks if info is not None else None,
            started_at=time.time(),
            log_start=log_start,
        )
        with self._lock:
            self._procs[proc.pid] = proc
        if self._reaper is not None:
            self._reaper.watch(proc, dict(handle))
        return handle

    def _watch_warm(self, handle: Handle) -> None:
        key = (int(handle["pid"]), handle.get("start_ticks"))
        with self._lock:
            exited = key in self._warm_exits
            if not exited:
                self._warm_running[key] = dict(handle)
        if exited:  # it ended before its start was recorded
            self._end_tree(handle)

    def _warm_exited(
        self, pid: int, start_ticks: int | None, status: int | None, alone: bool = False
    ) -> None:
        """From the warm pool's reader: a forked trial exited, its exit record is written
        (status None: its server went away first; it is now watched as after a restart).
        ``alone``: its server saw it leave no process behind, so there is nothing to scan for."""
        key = (pid, start_ticks)
        with self._lock:
            if status is not None:
                self._warm_exits[key] = status
            handle = self._warm_running.pop(key, None)
            if alone and handle is not None and handle.get("tag"):
                self._trees_ended.add(str(handle["tag"]))
        if self._on_exit is not None:
            self._on_exit()
        if handle is not None and status is not None:
            self._end_tree(handle)

    def _processes_exited(self, exited: list[tuple[subprocess.Popen[bytes], Handle]]) -> None:
        """From the reaper: trials' wrapper processes exited (those it saw together)."""
        assert self._on_exit is not None
        self._on_exit()
        self._end_trees([handle for _, handle in exited])

    # -- observing ----------------------------------------------------------------------------

    def _pid(self, handle: Handle) -> int | None:
        if handle.get("pid"):
            return int(handle["pid"])
        # crashed between start and recording the handle: the wrapper wrote its pid. The file
        # counts only when nobody else could have written it; the pid is never signalled on
        # its word (stopping finds the processes by the trial's tag).
        return exit_record.read_pid(handle.get("status_file") or "")

    def poll(self, handle: Handle) -> RunState:
        pid = self._pid(handle)
        if pid is None:
            return RunState(RunPhase.FAILED, NOT_STARTED, "the trial process never started")
        key = (pid, handle.get("start_ticks"))
        with self._lock:
            proc = self._procs.get(pid)
            warm_running = key in self._warm_running
            warm_status = self._warm_exits.pop(key, None)
        if warm_status is not None:
            self._end_tree(handle)
            return self._finished(warm_status)
        if warm_running:
            return self._check_deadline(handle)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return self._check_deadline(handle)
            with self._lock:
                self._procs.pop(pid, None)
            self._end_tree(handle)
            return self._finished(code)
        if _alive(pid, handle):
            return self._check_deadline(handle)
        if _server_alive(handle) and exit_record.read_exit(handle["status_file"]) is None:
            return self._check_deadline(handle)  # its fork server is writing the exit record
        self._end_tree(handle)  # ended while nobody watched: its leftovers may still run
        record = exit_record.read_exit(handle.get("status_file") or "")
        return self._finished(record.status if record is not None else None)

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

    # -- ending the process tree --------------------------------------------------------------

    @staticmethod
    def _processes(handle: Handle) -> proctree.TrialProcesses | None:
        tag = handle.get("tag")
        if not tag:
            return None
        pid = handle.get("pid")
        return proctree.TrialProcesses(
            tag=str(tag),
            leader=int(pid) if pid else None,
            leader_ticks=handle.get("start_ticks"),
            boot=str(handle.get("boot") or ""),
        )

    def _end_tree(self, handle: Handle, grace_seconds: float = 0.0) -> None:
        """Kill what is left of the trial's processes (once per trial and runner)."""
        self._end_trees([handle], grace_seconds)

    def _end_trees(self, handles: list[Handle], grace_seconds: float = 0.0) -> None:
        """:meth:`_end_tree` for several trials; without a grace period, one ``/proc`` scan
        finds the leftovers of all of them (:func:`proctree.end_all`)."""
        trials: dict[str, tuple[proctree.TrialProcesses, Handle]] = {}
        for handle in handles:
            trial = self._processes(handle)
            if trial is not None:
                trials.setdefault(trial.tag, (trial, handle))
        with self._lock:
            locks = {
                tag: self._tree_locks.setdefault(tag, threading.Lock())
                for tag in sorted(trials)
                if tag not in self._trees_ended
            }
        with contextlib.ExitStack() as held:
            for lock in locks.values():  # in tag order: two callers never wait on each other
                held.enter_context(lock)
            with self._lock:
                todo = [trials[tag] for tag in locks if tag not in self._trees_ended]
            if not todo:
                return
            try:
                if grace_seconds > 0:
                    killed = {
                        trial.tag: proctree.end(trial, grace_seconds=grace_seconds)
                        for trial, _ in todo
                    }
                else:
                    killed = proctree.end_all([trial for trial, _ in todo])
            except Exception:  # never let a /proc surprise break the reconcile loop
                log.exception(
                    "could not end the processes of trial(s) %s",
                    ", ".join(str(handle.get("log")) for _, handle in todo),
                )
                killed = {}
            for trial, handle in todo:
                if killed.get(trial.tag):
                    log.info(
                        "ended %d process(es) of trial %s", killed[trial.tag], handle.get("log")
                    )
            with self._lock:
                for trial, _ in todo:
                    self._trees_ended.add(trial.tag)
                    self._tree_locks.pop(trial.tag, None)

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_seconds: float = 10.0) -> None:
        pid = self._pid(handle)
        if pid is None:
            return
        with self._lock:
            proc = self._procs.get(pid)
        if self._processes(handle) is not None:
            self._end_tree(handle, grace_seconds)
        elif _alive(pid, handle) or proc is not None:
            self._stop_group(pid, handle, proc, grace_seconds)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        key = (pid, handle.get("start_ticks"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a forked trial: until its exit record is written
            with self._lock:
                if key not in self._warm_running:
                    break
            time.sleep(0.005)

    def close(self) -> None:
        """Let the warm pool's servers go: they fork no more trials and leave once the trials
        they forked have ended (those keep running, as a started process does)."""
        self._warm.close()
        if self._reaper is not None:
            self._reaper.close()

    @staticmethod
    def _stop_group(
        pid: int, handle: Handle, proc: subprocess.Popen[bytes] | None, grace_seconds: float
    ) -> None:
        """Handles recorded before trials were tagged: signal the process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and not _alive(pid, handle):
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def log_path(self, handle: Mapping[str, Any]) -> Path:
        return Path(handle["log"])


def _with_checkpoint(launch: TrialLaunch, plan: CheckpointPlan) -> TrialLaunch:
    """``launch`` reading its own checkpoint folder, made from the parent's
    (:mod:`controller.checkpoints`)."""
    try:
        folder = checkpoints.prepare_local(plan, paths.checkpoint_root(launch.log_path))
        job = checkpoints.apply_local(launch.job, launch.primary_container_name, plan, folder)
    except (OSError, ValueError) as exc:
        raise LaunchError(f"{checkpoints.SETTING}: {exc}") from None
    env = {**launch.env, **checkpoints.env_for(plan, str(folder))}
    return dataclasses.replace(launch, job=job, env=env)
