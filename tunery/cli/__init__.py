"""The ``tunery`` command: run, resume and inspect experiments; validate YAML; serve gRPC.

The public face for shell users (the console script ``tunery = tunery.cli:main``). Every
command maps the packages' errors to messages and exit codes, once; no traceback reaches a
user. Modules: ``app`` (the command group, shared options, errors and exit codes),
``running`` (validate, run, resume), ``inspection`` (list, status, trials, best, logs,
delete), ``serving`` (serve, operator), ``dashboard`` (the web dashboard).

Exit codes: 0 success; 1 the experiment failed (or a trial/experiment was not found);
2 invalid input (usage, YAML, validation); 3 the database or a service is unavailable;
130 interrupted (Ctrl-C; the experiment stays resumable).
"""

from __future__ import annotations

from tunery.cli import dashboard, inspection, running, serving  # noqa: F401  (register commands)
from tunery.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    CliError,
    main,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_UNAVAILABLE",
    "CliError",
    "main",
]
