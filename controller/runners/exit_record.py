"""A local trial's exit record: its exit status and where its output ended.

Written by the ``/bin/sh`` wrapper the local runner (:mod:`controller.runners.local`) starts
each trial under, read by that runner (how did the trial end, also after a controller crash)
and by the local log watcher (:mod:`controller.collecting`: collect nothing written after
the end).

The wrapper records its pid in ``<exit file>.pid`` before running the trial, and, as soon as
the trial's main process has exited, writes ``<status> <offset>`` to the exit file, where
``offset`` is the position of the log's shared file description at that moment (read from
``/proc/self/fdinfo/1``; the log is opened for appending, so it is the end of everything the
trial's processes had written through it). Descendants still running then may go on writing
until the runner kills them; those bytes lie beyond ``offset``. Both files are created 0600 and
are trusted only while they are this user's and not writable by others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery.files import is_private_file

WRAPPER = (
    'umask 077; echo $$ > "$0.pid"; '
    'for f in "$TUNERY_METRICS_FILE" "$TUNERY_METRICS_PATH"; do '
    '[ -z "$f" ] || : 2>/dev/null >> "$f"; done; '
    'umask "$1"; shift; "$@"; status=$?; end=; '
    '{ read -r _ end; } 2>/dev/null < "/proc/$$/fdinfo/1"; '
    'umask 077; echo "$status $end" > "$0"; exit $status'
)
"""``sh -c WRAPPER <exit file> <umask> <argv...>``. The wrapper creates its pid file, the exit
file and the trial's metrics files (``TUNERY_METRICS_FILE``, ``TUNERY_METRICS_PATH``) under
umask 077, so they are 0600 whatever the controller's umask, then runs the trial with
``<umask>`` (the controller's). ``"$@"`` expands the trial's argv without any interpretation;
nothing is interpolated into the script."""


@dataclass(frozen=True)
class ExitRecord:
    """``status``: the trial's exit status as the shell saw it (128+N: killed by signal N);
    ``output_end``: the log offset at its exit, None when it could not be read."""

    status: int
    output_end: int | None


def pid_path(exit_path: str | Path) -> Path:
    """Where the wrapper records its pid."""
    return Path(f"{exit_path}.pid")


def read_exit(exit_path: str | Path) -> ExitRecord | None:
    """The exit record, or None while the trial runs (or when the file is not trustworthy)."""
    if not is_private_file(exit_path):
        return None
    try:
        fields = Path(exit_path).read_text().split()
        status = int(fields[0])
        end = int(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    return ExitRecord(status, end)


def read_pid(exit_path: str | Path) -> int | None:
    """The wrapper's pid as it recorded it, or None (missing, garbled, or not trustworthy)."""
    path = pid_path(exit_path)
    if not is_private_file(path):
        return None
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def output_end(handle: Mapping[str, Any]) -> int | None:
    """Where the trial's log output ended, once it has ended; None while it runs.

    A trial that wrote nothing leaves the offset at 0 (or at where a previous start of the same
    trial left the log): the log's size when the trial started is the floor.
    """
    exit_path = handle.get("status_file")
    if not exit_path:
        return None
    record = read_exit(exit_path)
    if record is None:
        return None
    start = int(handle.get("log_start") or 0)
    if record.output_end is None:
        return None
    return max(record.output_end, start)
