"""The ``tunery`` command: run, resume and inspect experiments; validate YAML; serve gRPC.

The public face for shell users (the console script). Every command maps the packages' errors
to messages and exit codes here, once; no traceback reaches a user.

Exit codes: 0 success; 1 the experiment failed (or a trial/experiment was not found);
2 invalid input (usage, YAML, validation); 3 the database or a service is unavailable;
130 interrupted (Ctrl-C, SIGTERM or SIGHUP; the trials are stopped and the experiment stays
resumable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _db_option(func: F) -> F:
    return click.option(
        "--db",
        "db_url",
        envvar="TUNERY_DB_URL",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the store (default: sqlite .tunery/tunery.db; env TUNERY_DB_URL).",
    )(func)


def _output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints machine-readable output.",
    )(func)


@contextmanager
def _errors() -> Iterator[None]:
    """Map the packages' errors to messages and exit codes."""
    from tunery.store.errors import NotFoundError, StoreError, StoreUnavailableError

    try:
        yield
    except NotFoundError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except StoreUnavailableError as exc:
        raise CliError(f"database unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except StoreError as exc:
        raise CliError(f"store error: {exc}", EXIT_UNAVAILABLE) from None


def _open_store(db_url: str | None):
    from tunery.store import open_store

    return open_store(db_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="tunery")
def main(verbose: int) -> None:
    """tunery: hyperparameter tuning, compatible with Kubeflow Katib."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
