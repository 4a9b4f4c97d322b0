"""A warm fork server: one Python process per experiment that forks one child per trial.

Started by :class:`controller.runners.warm.WarmPool` (for the local runner) as
``<python> -m controller.runners.forkserver <fd> <entry module> <entry args...>`` for trials
whose command is ``<python> -m <entry module> <entry args...> <trial args...>``. It imports the
entry module once and calls its ``warm(*entry_args)`` if it has one (``tunery.sdk.trial_entry``
unpickles the objective there, importing the user's modules), so each trial starts as a
``fork()`` of an interpreter that is already set up instead of a fresh one.

Each trial is still its own process, isolated as before: the child starts its own session and
process group, gets the trial's log (passed as a file descriptor by the runner) as stdout and
stderr, its own environment (``os.environ`` replaced: trial names, tag, metrics file,
``CUDA_VISIBLE_DEVICES``), working directory and umask, and then runs the entry's
``main(trial args)``. A crash, an ``os._exit`` or a leak in it ends with that child; the server
and the other trials never run the objective.

The protocol runs over a ``SOCK_SEQPACKET`` Unix socket (one JSON message per packet):

- runner → server: ``{"start": id, "args", "env", "cwd", "umask", "status_file"}`` with the
  log's file descriptor attached;
- server → runner: ``{"started": id, "pid", "start_ticks"}`` or ``{"failed": id, "error"}``,
  and, once a child has exited and was reaped, ``{"exit": pid, "start_ticks", "status",
  "alone"}`` (status negative: killed by that signal; ``alone``: see below).

The server is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process a trial leaves behind
(its parent exited: a background job, a double fork, a daemon) is re-parented to the server,
not to the controller or init, so every process of a trial stays below the server. When a
trial's main process is reaped and the server's only children left are the other trials'
main processes, the ended trial left no process at all, and its exit says ``"alone": true``:
the runner then needs no ``/proc`` scan for its leftovers
(:mod:`controller.runners.proctree`); otherwise it scans and ends them as before. The server
reaps every child re-parented to it.

The server writes the same exit record as the ``/bin/sh`` wrapper of the local runner
(:mod:`controller.runners.exit_record`): the child writes ``<exit file>.pid`` and creates the
metrics files under umask 077 before running the trial; the server, on reaping it, writes
``<status> <log offset>`` (status 128+N for a signal, as a shell reports it). When the runner
goes away (its end of the socket closes) the server stops forking and leaves once its running
children have ended, writing their records, so a restarted controller learns how they ended.

The server itself must stay single-threaded (it forks); keep it free of threads and of
libraries that start them at import.
"""

from __future__ import annotations

import contextlib
import ctypes  # imported once here, not in every forked child (stamp_tag)
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TAG_ENV = "TUNERY_TRIAL_TAG"
"""As :data:`controller.runners.proctree.TAG_ENV` (not imported: the server stays small)."""

MAX_MESSAGE = 1 << 20
"""Largest message accepted (a trial's environment and arguments)."""

TAG_PLACEHOLDER = "0" * 32
"""The server starts with ``TUNERY_TRIAL_TAG=<this>``; each child writes its own tag (as
long) over it in its initial environment, which ``/proc/<pid>/environ`` shows, so that the
trial's processes are found by their tag (:mod:`controller.runners.proctree`), also those
it forks without ``exec``."""


@dataclass(frozen=True)
class StartRequest:
    """One trial to fork, as the runner sent it."""

    request_id: int
    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    umask: int
    status_file: str

    @classmethod
    def parse(cls, message: dict[str, Any]) -> StartRequest:
        return cls(
            request_id=int(message["start"]),
            args=tuple(str(a) for a in message["args"]),
            env={str(k): str(v) for k, v in message["env"].items()},
            cwd=str(message["cwd"]),
            umask=int(message["umask"]),
            status_file=str(message["status_file"]),
        )


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def tag_slot() -> int | None:
    """The address of :data:`TAG_PLACEHOLDER` in this process's initial environment (the
    memory ``/proc/self/environ`` reads), None when it is not there. A forked child has it at
    the same address: the server finds it once, before forking."""
    needle = f"{TAG_ENV}={TAG_PLACEHOLDER}".encode() + b"\0"
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        area = ctypes.string_at(start, end - start)
    except (OSError, ValueError, IndexError):
        return None
    at = area.find(needle) if area.startswith(needle) else area.find(b"\0" + needle)
    if at < 0:
        return None
    if not area.startswith(needle):
        at += 1
    return start + at + len(TAG_ENV) + 1


def stamp_tag(tag: str, slot: int | None = None) -> bool:
    """Write ``tag`` over :data:`TAG_PLACEHOLDER` in this process's initial environment, at
    ``slot`` (:func:`tag_slot`, found now when not given); True when it was there and had the
    same length."""
    if len(tag) != len(TAG_PLACEHOLDER):
        return False
    if slot is None:
        slot = tag_slot()
        if slot is None:
            return False
    ctypes.memmove(slot, tag.encode("ascii"), len(tag))
    return True


def _touch_private(path: str) -> None:
    """Create ``path`` if missing (the umask makes it 0600); a missing folder is ignored."""
    if not path:
        return
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))


def _write_record(path: str, text: str) -> None:
    """Replace the exit record atomically with a 0600 file."""
    temporary = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


class ForkServer:
    """The server's loop: fork on request, reap, record, report."""

    def __init__(
        self, sock: socket.socket, module_name: str, run: Callable[[list[str]], int]
    ) -> None:
        self._sock = sock
        self._module_file = getattr(sys.modules.get(module_name), "__file__", module_name)
        self._run = run
        # pid -> (log fd, exit file, start ticks)
        self._running: dict[int, tuple[int, str, int | None]] = {}
        self._open = True
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._tag_slot = tag_slot()  # where each child writes its tag (the same after fork)

    def serve(self) -> None:
        self._subreaper = _become_subreaper()
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the fd below
        signal.set_wakeup_fd(self._wake_w)
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ, "socket")
        selector.register(self._wake_r, selectors.EVENT_READ, "child")
        while self._open or self._running:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "socket":
                    if not self._receive():
                        selector.unregister(self._sock)
                        self._open = False
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
            self._reap()

    def _send(self, message: dict[str, Any]) -> None:
        if not self._open:
            return
        try:
            self._sock.send(json.dumps(message).encode())
        except OSError:
            self._open = False

    def _receive(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self._sock, MAX_MESSAGE, 1)
        except ConnectionError:
            return False
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        request_id: Any = None
        try:
            message = json.loads(data)
            request_id = message.get("start")
            if len(fds) != 1:
                raise ValueError("a start request carries exactly one file descriptor")
            request = StartRequest.parse(message)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            for fd in fds:
                os.close(fd)
            self._send({"failed": request_id, "error": f"bad request: {exc}"})
            return True
        self._fork(request, fds[0])
        return True

    def _fork(self, request: StartRequest, log_fd: int) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(log_fd)
            self._send({"failed": request.request_id, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            code = 1
            try:
                code = self._child(request, log_fd)
            finally:
                os._exit(code)
        ticks = _start_ticks(pid)
        self._running[pid] = (log_fd, request.status_file, ticks)
        self._send({"started": request.request_id, "pid": pid, "start_ticks": ticks})

    def _child(self, request: StartRequest, log_fd: int) -> int:
        """In the forked child: become the trial's process, run it, return its exit status."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        for fd, _, _ in self._running.values():
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.umask(0o077)
        try:
            os.chdir(request.cwd)
            with open(f"{request.status_file}.pid", "w") as handle:
                handle.write(f"{os.getpid()}\n")
            os.environ.clear()
            os.environ.update(request.env)
            if request.env.get(TAG_ENV) and self._tag_slot is not None:
                stamp_tag(request.env[TAG_ENV], self._tag_slot)
            for name in ("TUNERY_METRICS_FILE", "TUNERY_METRICS_PATH"):
                _touch_private(request.env.get(name, ""))
        except OSError as exc:
            print(f"tunery: cannot start the trial: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            os.umask(request.umask)
        sys.argv = [self._module_file, *request.args]
        try:
            code = self._run(list(request.args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        return code & 0xFF

    def _reap(self) -> None:
        while True:  # trials, and the processes they left behind (re-parented here)
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self._running.pop(pid, None)
            if entry is None:
                continue
            log_fd, status_file, ticks = entry
            code = os.waitstatus_to_exitcode(wait_status)
            try:
                end = str(os.lseek(log_fd, 0, os.SEEK_CUR))
            except OSError:
                end = ""
            finally:
                os.close(log_fd)
            try:
                _write_record(status_file, f"{code if code >= 0 else 128 - code} {end}\n")
            except OSError as exc:
                print(f"tunery forkserver: cannot write {status_file}: {exc}", file=sys.stderr)
            self._send({"exit": pid, "start_ticks": ticks, "status": code, "alone": self._alone()})

    def _alone(self) -> bool:
        """True when this server's children are only the running trials' main processes: a
        trial just reaped left no process behind (they would be children here, re-parented
        when it exited). False when unsure (not a subreaper, no ``children`` file)."""
        if not self._subreaper:
            return False
        try:
            with open(f"/proc/self/task/{os.getpid()}/children", "rb") as handle:
                children = {int(pid) for pid in handle.read().split()}
        except (OSError, ValueError):
            return False
        return children <= set(self._running)


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True on success."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _entry(module_name: str, entry_args: list[str]) -> Callable[[list[str]], int]:
    """Import the entry module, warm it, and return its ``main``."""
    module = importlib.import_module(module_name)
    warm = getattr(module, "warm", None)
    if warm is not None:
        # on failure each trial loads the objective itself and reports what went wrong
        with contextlib.suppress(Exception):
            warm(*entry_args)
    main: Callable[[list[str]], int] = module.main

    def run(args: list[str]) -> int:
        return main([*entry_args, *args])

    return run


def main(argv: list[str]) -> int:
    """``forkserver <socket fd> <entry module> <entry args...>``: serve until the runner
    leaves and every child ended."""
    if len(argv) < 2:
        usage = "usage: python -m controller.runners.forkserver FD MODULE [ARGS...]"
        print(usage, file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(argv[0]))
    os.umask(0o077)
    run = _entry(argv[1], argv[2:])
    ForkServer(sock, argv[1], run).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
