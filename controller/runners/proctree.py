"""Find and end every process of one local trial, wherever it went (Linux ``/proc``).

Called by :mod:`controller.runners.local` when a trial ends (its main process exited) and
when it is stopped (Ctrl-C, early stopping, deadline, experiment end).

How a trial's processes are recognised: the runner gives each trial a unique tag in its
environment (``TUNERY_TRIAL_TAG``, kept in the trial's handle in the store). Every process the
trial starts inherits it, whatever it does with its process group or session (``setsid``,
double forks, daemons re-parented to init), and a restarted controller finds them again from
the stored tag. A scan of ``/proc`` takes the processes of this user that were started no
earlier than the trial and carry the tag, plus those in the trial's process group or session
(a child that cleared its environment but stayed there), plus, transitively, the children of
any of these.

Limits (documented in docs/local.md): a descendant that both replaces its whole environment
(``env -i``, ``execve`` with a new environment) and leaves the trial's session, or one that
runs as another user (a setuid program), is not found. ``/proc/<pid>/environ`` shows the
environment a program was started with, so ``os.environ`` edits inside a running process do
not hide it.

The runner makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a trial process whose
parent exits is re-parented to the controller instead of init, and the processes :func:`end`
kills are reaped by it at once instead of lingering as zombies.

Signals go through a pidfd (``pidfd_open``) opened before the process's start time is checked
again, so a pid reused by an unrelated process between scan and signal is never hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAG_ENV = "TUNERY_TRIAL_TAG"
"""The environment variable carrying a trial's tag."""

_PROC = Path("/proc")


def new_tag() -> str:
    """A fresh, unguessable tag for one trial start."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ProcInfo:
    """The fields of ``/proc/<pid>/stat`` the scan needs."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start_ticks: int
    zombie: bool


def proc_info(pid: int) -> ProcInfo | None:
    """The process's stat fields, or None when it is gone."""
    try:  # os.open/os.read: the scan reads every process's stat, pathlib costs 3x
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    if not raw:
        return None
    # the command name (field 2) may contain spaces and ')': fields after the last ')' are fixed
    fields = raw.rsplit(b")", 1)[1].split()
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
        zombie=fields[0] in (b"Z", b"X"),
    )


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True on success."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@functools.cache
def boot_id() -> str:
    """This boot's id: pids and start times of another boot say nothing about this one (read
    once per process: it cannot change while the process lives)."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class TrialProcesses:
    """How to recognise one trial's processes (all of it is kept in the trial's handle).

    ``tag`` is the value of ``TUNERY_TRIAL_TAG``; ``leader`` the pid of the trial's first
    process (the wrapper: its process group and session id), ``leader_ticks`` its start time
    and ``boot`` the boot it ran in. The group and session are trusted only in the same boot
    and while the pid is not reused by another process.
    """

    tag: str
    leader: int | None = None
    leader_ticks: int | None = None
    boot: str = ""


def carries_tag(pid: int, tag: str) -> bool:
    """True when the (live) process ``pid`` belongs to this user and was started with ``tag``."""
    needle = f"{TAG_ENV}={tag}".encode()
    try:
        if os.stat(_PROC / str(pid)).st_uid != os.getuid():
            return False
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return needle in environ.split(b"\0")


def _owner(pid: int) -> int | None:
    try:
        return os.stat(_PROC / str(pid)).st_uid
    except OSError:
        return None


def _trusted_leader(trial: TrialProcesses) -> int | None:
    """The leader pid when its process group and session are certainly the trial's."""
    if trial.leader is None or not trial.boot or trial.boot != boot_id():
        return None
    info = proc_info(trial.leader)
    if info is None:
        return trial.leader  # gone: a group or session still using its id is the trial's
    if info.start_ticks == trial.leader_ticks or carries_tag(trial.leader, trial.tag):
        return trial.leader
    return None  # the pid now names another process


def find(trial: TrialProcesses) -> dict[int, int]:
    """The live processes of ``trial`` (pid → start ticks), never this process.

    Processes of this user carrying the tag, those in the trial's process group or session,
    and, transitively, the children of any of these; in the trial's boot, only processes
    started no earlier than its first one are looked at.
    """
    return find_all([trial])[trial.tag]


def find_all(trials: Sequence[TrialProcesses]) -> dict[str, dict[int, int]]:
    """:func:`find` for several trials (by tag) with one scan of ``/proc``: trials that end
    together (a wave of short trials) cost one scan, not one each."""
    me, uid = os.getpid(), os.getuid()
    leaders = [_trusted_leader(trial) for trial in trials]
    # a descendant starts no earlier than the trial's first process (same boot only)
    since = [
        trial.leader_ticks if leader is not None and trial.leader_ticks is not None else 0
        for trial, leader in zip(trials, leaders, strict=True)
    ]
    infos: dict[int, ProcInfo] = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return {trial.tag: {} for trial in trials}
    oldest = min(since, default=0)
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        info = proc_info(int(name))
        if info is not None and not info.zombie and info.start_ticks >= oldest:
            infos[info.pid] = info
    return {
        trial.tag: _members(trial, leader, first, infos, uid)
        for trial, leader, first in zip(trials, leaders, since, strict=True)
    }


def _members(
    trial: TrialProcesses, leader: int | None, since: int, infos: dict[int, ProcInfo], uid: int
) -> dict[int, int]:
    """The processes of ``infos`` (started at ``since`` or later) that belong to ``trial``."""
    candidates = {pid: info for pid, info in infos.items() if info.start_ticks >= since}
    found = {
        pid
        for pid, info in candidates.items()
        if (leader is not None and leader in (info.pgid, info.sid) and _owner(pid) == uid)
        or carries_tag(pid, trial.tag)
    }
    grew = bool(found)
    while grew:  # children of found processes, whatever their environment
        grew = False
        for pid, info in candidates.items():
            if pid not in found and info.ppid in found and _owner(pid) == uid:
                found.add(pid)
                grew = True
    return {pid: candidates[pid].start_ticks for pid in found}


def send(pid: int, start_ticks: int, sig: signal.Signals) -> bool:
    """Signal ``pid`` if it is still the process that started at ``start_ticks``.

    The check comes after a pidfd was opened, and the signal goes through that pidfd, so a pid
    reused meanwhile is never signalled. True when the signal was sent.
    """
    pidfd: int | None = None
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(pid)
    try:
        info = proc_info(pid)
        if info is None or info.zombie or info.start_ticks != start_ticks:
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end(trial: TrialProcesses, *, grace_seconds: float = 0.0, settle_seconds: float = 5.0) -> int:
    """End every process of ``trial``; returns how many were signalled.

    With ``grace_seconds`` > 0 they get SIGTERM first and SIGKILL after the grace period (or
    as soon as all are gone); with 0, SIGKILL at once, as a container's processes end with
    its main process. Processes forked meanwhile are found by the next scan; scanning repeats
    until none is left or ``settle_seconds`` have passed after the SIGKILL.
    """
    signalled: set[int] = set()
    if grace_seconds > 0:
        for pid, ticks in find(trial).items():
            if send(pid, ticks, signal.SIGTERM):
                signalled.add(pid)
        deadline = time.monotonic() + grace_seconds
        while signalled and time.monotonic() < deadline and find(trial):
            time.sleep(0.02)
    return end_all([trial], settle_seconds=settle_seconds, signalled={trial.tag: signalled})[
        trial.tag
    ]


def end_all(
    trials: Sequence[TrialProcesses],
    *,
    settle_seconds: float = 5.0,
    signalled: Mapping[str, set[int]] | None = None,
) -> dict[str, int]:
    """SIGKILL every process of each of ``trials`` at once, as :func:`end` with no grace
    period, with one ``/proc`` scan per round for all of them (trials that end together cost
    one scan); returns how many processes of each trial (by tag) were signalled.
    ``signalled``: per tag, the pids already signalled (SIGTERM), reaped and counted too."""
    sent = {trial.tag: set((signalled or {}).get(trial.tag, ())) for trial in trials}
    deadline = time.monotonic() + settle_seconds
    while True:
        alive = find_all(trials)
        if not any(alive.values()):
            break
        for tag, members in alive.items():
            for pid, ticks in members.items():
                if send(pid, ticks, signal.SIGKILL):
                    sent[tag].add(pid)
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    leaders = {trial.leader for trial in trials if trial.leader is not None}
    killed = set().union(*sent.values())
    _reap(killed - leaders, settle_seconds)
    if killed:
        _reap_exited(killed | leaders, leaders)
    return {tag: len(pids) for tag, pids in sent.items()}


def _reap_exited(groups: set[int], leaders: set[int]) -> None:
    """Reap this process's zombie children that belonged to the trials without being killed
    by them (a double fork's middle process, exited at once, re-parented here when its parent
    was killed): those whose process group or session is one of ``groups``. Never a trial's
    first process (one of ``leaders``: its ``Popen`` reaps it)."""
    me = os.getpid()
    try:
        names = os.listdir(_PROC)
    except OSError:
        return
    for name in names:
        if not name.isdigit() or int(name) in leaders:
            continue
        info = proc_info(int(name))
        if info is None or not info.zombie or info.ppid != me:
            continue
        if info.pgid in groups or info.sid in groups:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)


def _reap(pids: set[int], timeout: float) -> None:
    """Reap the ended processes that are (or are about to be re-parented as) this process's
    children. The trial's first process is not among them: its ``Popen`` waits for it."""
    me = os.getpid()
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            info = proc_info(pid)
            if info is None:
                pending.discard(pid)
            elif info.ppid == me:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue  # not dead yet
                pending.discard(pid)
            elif info.ppid not in pending:
                pending.discard(pid)  # another's child: its parent (or init) reaps it
        if pending:
            time.sleep(0.005)
