"""The end of a trial's log, quoted in the messages of trials that failed.

Called by the reconciler (:meth:`controller.reconcile.Reconciler` sets a Failed trial's
message with :func:`failure_message`) and by the SDK (``tune()``'s errors quote
:func:`log_tail`). Lines are read and cleaned by :mod:`metrics_collector.tail`.
"""

from __future__ import annotations

import os

from metrics_collector.tail import read_last_lines

FAILURE_TAIL_LINES = 5
"""How many of a failed trial's last log lines its message quotes."""


def log_tail(path: str | os.PathLike[str] | None, lines: int) -> str:
    """The last ``lines`` lines of the log at ``path`` ("" without a path or a log)."""
    if not path:
        return ""
    try:
        return "\n".join(read_last_lines(path, lines))
    except OSError:
        return ""


def failure_message(job_message: str, log_path: str | None) -> str:
    """Katib's "Trial has failed. Job message: ..." with the log's last lines and its path.

    The first line (what one-line views show) ends with the last non-empty log line, e.g.
    ``exit code 2: python: can't open file 'train.py'``; the lines after it quote the end of
    the log under its path.
    """
    message = f"Trial has failed. Job message: {job_message}"
    lines = log_tail(log_path, 4 * FAILURE_TAIL_LINES).splitlines()
    tail = [line for line in lines if line.strip()][-FAILURE_TAIL_LINES:]
    if not tail:
        return message if not log_path else f"{message} (log: {log_path})"
    quoted = "\n".join(f"  {line}" for line in tail)
    return f"{message}: {tail[-1].strip()}\nlast lines of {log_path}:\n{quoted}"
