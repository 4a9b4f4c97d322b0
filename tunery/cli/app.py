"""The ``tunery`` command group: shared options, the store it reads, errors and exit codes.

The public face for shell users (the console script). Every command maps the packages' errors
to messages and exit codes here, once; no traceback reaches a user. The command modules
(``running``, ``inspection``, ``serving``) register on :data:`main`.

Exit codes: 0 success; 1 the experiment failed (or a trial/experiment was not found);
2 invalid input (usage, YAML, validation, a bad ``--db`` URL); 3 the database or a service is
unavailable (a missing database driver included); 130 interrupted (Ctrl-C, SIGTERM or SIGHUP;
the trials are stopped and the experiment stays resumable).
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


class NoStoreError(Exception):
    """A read-only command found no store at the default or given SQLite path."""


def _db_option(func: F) -> F:
    return click.option(
        "--db",
        "db_url",
        envvar="TUNERY_DB_URL",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the store (default: sqlite .tunery/tunery.db; env TUNERY_DB_URL).",
    )(func)


def _namespace_option(func: F) -> F:
    return click.option(
        "--namespace",
        "-n",
        envvar="TUNERY_NAMESPACE",
        default=None,
        metavar="NAME",
        help="The namespace to read, in a store shared with the operator (default: `default`, "
        "where local runs keep theirs; env TUNERY_NAMESPACE).",
    )(func)


def _output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints machine-readable output (schema: docs/cli.md).",
    )(func)


def store_name(db_url: str | None) -> str:
    """The store a command reads, as a URL with its password hidden."""
    from tunery.store import resolve_db_url

    try:
        return resolve_db_url(db_url)
    except ValueError:
        return "the given --db URL"


def _found_elsewhere(db_url: str | None, namespace: str | None, name: str) -> str:
    """The hint ``; 'NAME' is in namespace …: pass --namespace`` when other namespaces of the
    store hold an experiment or a trial called ``name``; '' otherwise (or when that cannot be
    told)."""
    from tunery.store.errors import NotFoundError, StoreError

    try:
        store = _open_store(db_url)
    except (NoStoreError, StoreError, ValueError):
        return ""
    try:
        here = namespace or store.namespace
        holding = set(store.trial_namespaces(name))
        for other in store.list_namespaces():
            try:
                store.in_namespace(other).get_experiment(name)
                holding.add(other)
            except NotFoundError:
                pass
    except StoreError:
        return ""
    finally:
        store.close()
    holding.discard(here)
    if not holding:
        return ""
    return f"; {name!r} is in namespace {', '.join(sorted(holding))}: pass --namespace"


@contextmanager
def _errors(
    db_url: str | None = None, namespace: str | None = None, name: str | None = None
) -> Iterator[None]:
    """Map the packages' errors to messages and exit codes; a not-found error names the store
    (and namespace) it looked in, and where else ``name`` is, if anywhere."""
    from tunery.store.errors import (
        DriverMissingError,
        InvalidStoreUrlError,
        NotFoundError,
        StoreError,
        StoreUnavailableError,
    )

    try:
        yield
    except NoStoreError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except NotFoundError as exc:
        where = store_name(db_url) + (f", namespace: {namespace}" if namespace else "")
        elsewhere = _found_elsewhere(db_url, namespace, name) if name else ""
        raise CliError(f"{exc} (store: {where}){elsewhere}", EXIT_FAILED) from None
    except InvalidStoreUrlError as exc:
        raise CliError(f"--db: {exc}", EXIT_INVALID) from None
    except DriverMissingError as exc:
        raise CliError(f"database unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except StoreUnavailableError as exc:
        raise CliError(f"database unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except StoreError as exc:
        raise CliError(f"store error: {exc}", EXIT_UNAVAILABLE) from None


def _open_store(db_url: str | None, *, create: bool = False, namespace: str | None = None) -> Any:
    """The store at ``db_url``, bound to ``namespace`` if given. Read-only commands pass
    ``create=False``: a SQLite file that does not exist is not created (NoStoreError names
    where it was looked for)."""
    from tunery.store import open_store
    from tunery.store.engine import missing_sqlite_file

    if not create:
        missing = missing_sqlite_file(db_url)
        if missing is not None:
            raise NoStoreError(
                f"no tunery store at {missing} (nothing has run with this store; run "
                "`tunery run` here first, or point --db / TUNERY_DB_URL at the store you used)"
            )
    store = open_store(db_url)
    if namespace is None:
        return store
    try:
        return store.in_namespace(namespace)
    except ValueError as exc:
        store.close()
        raise CliError(f"--namespace: {exc}", EXIT_INVALID) from None


def verbosity() -> int:
    """How many ``-v`` the command line has (0 outside a command)."""
    context = click.get_current_context(silent=True)
    return int(context.find_root().params.get("verbose") or 0) if context else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="tunery", prog_name="tunery")
def main(verbose: int) -> None:
    """tunery: hyperparameter tuning, compatible with Kubeflow Katib."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
