"""Errors raised by every Store implementation; callers map them at their boundary.

::

    StoreError(Exception)
     ├── NotFoundError(StoreError, KeyError)        experiment/trial does not exist
     ├── AlreadyExistsError(StoreError, ValueError) name taken
     ├── AmbiguousTrialError(StoreError)            a trial name held in several namespaces
     ├── StoreUnavailableError(StoreError)          cannot connect / operational error (retryable)
     ├── InvalidStoreUrlError(StoreError, ValueError) the URL is malformed or names no backend
     └── DriverMissingError(StoreError)             the backend's driver (an extra) is missing
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of the store's errors."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotFoundError(StoreError, KeyError):
    """The named experiment or trial does not exist."""


class AlreadyExistsError(StoreError, ValueError):
    """An experiment or trial with that name already exists."""


class AmbiguousTrialError(StoreError):
    """A trial named without its namespace (Katib's DBManager and EarlyStopping wires) is
    held in several namespaces; ``namespaces`` lists them."""

    def __init__(self, message: str, namespaces: list[str]) -> None:
        super().__init__(message)
        self.namespaces = namespaces


class StoreUnavailableError(StoreError):
    """The database cannot be reached or failed operationally; retrying may help."""


class InvalidStoreUrlError(StoreError, ValueError):
    """The database URL does not parse or names a backend tunery does not support."""


class DriverMissingError(StoreError):
    """The database driver for the URL's backend is not installed; the message names the
    extra that installs it (e.g. ``pip install 'tunery[postgres]'``)."""
