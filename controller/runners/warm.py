"""The local runner's warm pool: fork servers that start Python trials without a new interpreter.

Used by :class:`controller.runners.local.LocalRunner` for trials whose command is this
interpreter running a module of :data:`WARM_MODULES` (``tune()``'s trials:
``python -m tunery.sdk.trial_entry <trial.json> name=value ...``). One
:mod:`controller.runners.forkserver` process is started per distinct
``(interpreter, module, entry argument, working directory, environment)`` the first time such a
trial starts (so once per experiment), and forks every later trial of it: the interpreter
starts, and the user's modules are imported and the objective unpickled, once per experiment
and runner instead of once per trial.

The pool keeps one reader thread per server (not per trial); it hands the start replies to
:meth:`WarmPool.start` and calls ``on_exit(pid, ...)`` when a trial process has exited and
its exit record is written. Trial processes are children of their server, not of the
controller: the runner watches them through these events and ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.runners import forkserver, proctree
from controller.runners.base import LaunchError

log = logging.getLogger(__name__)

WARM_MODULES = frozenset({"tunery.sdk.trial_entry"})
"""Entry modules a fork server may run: their ``main(argv) -> int`` runs a trial in-process
and leaves no state behind that another trial could see (each trial is a fresh fork)."""

PER_TRIAL_PREFIXES = ("TUNERY_",)
PER_TRIAL_VARIABLES = frozenset(
    {"KATIB_TRIAL_NAME", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"}
)
"""Environment variables that differ between the trials of one experiment: the server does not
get them (each child gets the whole trial environment)."""

_START_TIMEOUT = 60.0
MAX_SERVERS = 4
"""Servers kept at once: one per experiment is the rule; more only where the trials of one
experiment differ in environment or working directory."""


ExitCallback = Callable[[int, int | None, int | None, bool], None]
"""``on_exit(pid, start_ticks, status, alone)``: ``alone`` when the trial left no process
behind (:mod:`controller.runners.forkserver`)."""


@dataclass(frozen=True)
class WarmStart:
    """A trial forked by a server: its pid and start time in clock ticks, and the server's."""

    pid: int
    start_ticks: int | None
    server_pid: int
    server_ticks: int | None


def warm_split(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """``(server argv prefix, trial arguments)`` when ``argv`` can start warm, else None."""
    if len(argv) < 4 or argv[1] != "-m" or argv[2] not in WARM_MODULES:
        return None
    if os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        return None
    return argv[:4], argv[4:]


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The trial environment without what differs from trial to trial, plus the placeholder
    each child writes its trial tag over (:func:`controller.runners.forkserver.stamp_tag`)."""
    base = {
        k: v
        for k, v in env.items()
        if not k.startswith(PER_TRIAL_PREFIXES) and k not in PER_TRIAL_VARIABLES
    }
    base[proctree.TAG_ENV] = forkserver.TAG_PLACEHOLDER
    return base


class _Server:
    """One fork server process and the runner's end of its socket."""

    def __init__(
        self,
        prefix: list[str],
        env: dict[str, str],
        cwd: Path,
        on_exit: ExitCallback,
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [
                    prefix[0],
                    "-m",
                    "controller.runners.forkserver",
                    str(theirs.fileno()),
                    *prefix[2:],
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock = ours
        info = proctree.proc_info(self.process.pid)
        self.start_ticks = info.start_ticks if info is not None else None
        self._send_lock = threading.Lock()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        self._on_exit = on_exit
        self._forked: set[tuple[int, int | None]] = set()  # started, exit not yet reported
        self._reader = threading.Thread(
            target=self._read, name=f"forkserver-{self.process.pid}", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # the server is gone (or we closed): its trials are on their own now
                self._replies.put({"closed": True})
                for pid, ticks in list(self._forked):
                    self._report(pid, ticks, None, False)
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.warning("fork server %d sent garbage: %r", self.process.pid, data[:200])
                continue
            if "exit" in message:
                ticks = message.get("start_ticks")
                ticks = None if ticks is None else int(ticks)
                self._forked.discard((int(message["exit"]), ticks))
                alone = message.get("alone") is True
                self._report(int(message["exit"]), ticks, int(message["status"]), alone)
            else:
                if "started" in message:
                    self._forked.add((int(message["pid"]), message.get("start_ticks")))
                self._replies.put(message)

    def _report(self, pid: int, ticks: int | None, status: int | None, alone: bool) -> None:
        try:
            self._on_exit(pid, ticks, status, alone)
        except Exception:  # never let a callback kill the reader
            log.exception("handling the exit of trial process %s", pid)

    def start(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path,
        umask: int,
        log_fd: int,
        status_file: str,
    ) -> WarmStart:
        with self._send_lock:  # one start at a time per server: replies come in order
            self._next_id += 1
            message = {
                "start": self._next_id,
                "args": args,
                "env": dict(env),
                "cwd": str(cwd),
                "umask": umask,
                "status_file": status_file,
            }
            try:
                socket.send_fds(self._sock, [json.dumps(message).encode()], [log_fd])
                reply = self._replies.get(timeout=_START_TIMEOUT)
            except (OSError, queue.Empty) as exc:
                raise LaunchError(f"the trial fork server is not answering: {exc}") from None
        if "started" in reply:
            return WarmStart(
                int(reply["pid"]), reply.get("start_ticks"), self.process.pid, self.start_ticks
            )
        if reply.get("closed"):
            raise LaunchError(
                f"the trial fork server exited (status {self.process.poll()}); see the "
                "controller's stderr"
            )
        raise LaunchError(f"the trial fork server could not start the trial: {reply['error']}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Close the socket: the server forks no more and leaves once its children ended."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1.0)
        self._reader.join(timeout=1.0)


class WarmPool:
    """Fork servers by trial command prefix, started on first use. Thread-safe."""

    def __init__(self, on_exit: ExitCallback) -> None:
        """``on_exit(pid, start_ticks, status, alone)`` is called from a reader thread once a
        forked trial has exited and its exit record is written (``status``: exit code, -N for
        signal N; ``alone``: it left no process behind), and with status None for each trial
        still running when its server went away (the runner then watches it through ``/proc``
        and its exit record, as after a restart).
        At most :data:`MAX_SERVERS` servers are kept; the least recently used one goes
        first."""
        self._on_exit = on_exit
        self._servers: dict[tuple[Any, ...], _Server] = {}
        self._lock = threading.Lock()

    def start(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        umask: int,
        log_fd: int,
        status_file: str,
    ) -> WarmStart | None:
        """Fork the trial from its server; None when ``argv`` cannot start warm.

        Raises:
            LaunchError: the server could not start the trial.
        """
        split = warm_split(argv)
        if split is None:
            return None
        prefix, args = split
        base_env = server_environment(env)
        key = (tuple(prefix), str(cwd), tuple(sorted(base_env.items())))
        retired: list[_Server] = []
        with self._lock:
            server = self._servers.pop(key, None)
            if server is not None and not server.alive:
                retired.append(server)
                server = None
            if server is None:
                try:
                    server = _Server(prefix, base_env, cwd, self._on_exit)
                except OSError as exc:
                    raise LaunchError(f"cannot start the trial fork server: {exc}") from None
            self._servers[key] = server  # the most recently used last
            while len(self._servers) > MAX_SERVERS:
                retired.append(self._servers.pop(next(iter(self._servers))))
        for old in retired:
            old.close()
        return server.start(args, env, cwd, umask, log_fd, status_file)

    def close(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.close()
