"""Persistence: experiments, trials and observation logs behind the :class:`Store` API.

Callers open a store with :func:`open_store` and code against :class:`Store`; SQLAlchemy
stays inside this package and is imported only when a store is opened, so importing
``tunery.store`` for its records and errors is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunery.store.base import (
    DEFAULT_NAMESPACE,
    Condition,
    ExperimentRecord,
    Store,
    TrialChanges,
    TrialRecord,
    TrialUpdate,
)
from tunery.store.errors import (
    AlreadyExistsError,
    AmbiguousTrialError,
    DriverMissingError,
    InvalidStoreUrlError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from tunery.store.sql import SqlStore

__all__ = [
    "DEFAULT_NAMESPACE",
    "AlreadyExistsError",
    "AmbiguousTrialError",
    "Condition",
    "DriverMissingError",
    "ExperimentRecord",
    "InvalidStoreUrlError",
    "NotFoundError",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TrialChanges",
    "TrialRecord",
    "TrialUpdate",
    "open_store",
    "resolve_db_url",
]


def open_store(url: str | None = None, *, namespace: str = DEFAULT_NAMESPACE) -> Store:
    """Open the store at ``url``, creating or upgrading its schema on first use.

    The store is bound to ``namespace`` (Katib's ``default`` unless given; the local faces use
    it): experiments and trials are keyed by namespace and name, and
    :meth:`Store.in_namespace` reaches another namespace on the same connections.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path.db``, ``postgresql://user@host/db``
    (psycopg 3) or ``mysql://user@host/db`` / ``mariadb://...`` (PyMySQL). Without one,
    ``$TUNERY_DB_URL``, else the SQLite file ``.tunery/tunery.db`` under the current directory
    (created with its directory). Close the store when done.

    Raises:
        InvalidStoreUrlError: the URL is malformed or names an unsupported backend (a
            ValueError too).
        ValueError: the namespace is empty or longer than 63 characters.
        DriverMissingError: the backend's driver is not installed; the message names the extra.
        StoreUnavailableError: the database cannot be reached (retryable).
        StoreError: the schema cannot be brought to this tunery's revision.
    """
    from tunery.store.base import check_namespace
    from tunery.store.sql import open_sql_store

    check_namespace(namespace)
    try:
        return open_sql_store(url, namespace=namespace)
    except InvalidStoreUrlError:
        raise
    except ValueError as exc:  # resolve_url's message names the URL, password hidden
        raise InvalidStoreUrlError(str(exc)) from None
    except ModuleNotFoundError as exc:
        extra = _DRIVER_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            if not _is_the_urls_driver(url, exc.name or ""):
                raise
            raise DriverMissingError(
                f"the database driver the URL names ({exc.name}) is not installed; tunery's "
                "extras install psycopg (postgresql://…, tunery[postgres]) and PyMySQL "
                "(mysql://…, tunery[mysql]): leave the driver out of the URL to use them"
            ) from None
        raise DriverMissingError(
            f"the {extra[0]} driver ({exc.name}) is not installed: "
            f"pip install 'tunery[{extra[1]}]'"
        ) from None


_DRIVER_EXTRAS = {  # the module SQLAlchemy imports -> (backend, the extra that installs it)
    "psycopg": ("PostgreSQL", "postgres"),
    "psycopg2": ("PostgreSQL", "postgres"),
    "pymysql": ("MySQL/MariaDB", "mysql"),
    "MySQLdb": ("MySQL/MariaDB", "mysql"),
}


def _is_the_urls_driver(url: str | None, module: str) -> bool:
    """Whether ``module`` is the DBAPI module of the driver the URL names
    or the package above it (``postgresql+asyncpg`` -> asyncpg, ``mysql+mysqlconnector`` ->
    mysql.connector, missing as mysql)."""
    from tunery.store.engine import resolve_url

    driver = resolve_url(url).get_driver_name()
    return bool(module) and driver.startswith(module.replace(".", ""))


def resolve_db_url(url: str | None = None) -> str:
    """The URL :func:`open_store` would use, as text with the password hidden."""
    from tunery.store.engine import describe_url, resolve_url

    return describe_url(resolve_url(url))


def __getattr__(name: str) -> Any:
    if name == "SqlStore":
        from tunery.store.sql import SqlStore

        return SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
