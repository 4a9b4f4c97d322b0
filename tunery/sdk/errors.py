"""The SDK's errors: one tree, each class also a built-in exception where one fits.

Part of :mod:`tunery.sdk`, which re-exports every class (``from tunery.sdk import
TuneryError``). Raised by ``tune()``, ``Client`` and ``report_metrics``; the SDK maps the
errors of the store, the controller, the collector and the Kubernetes client onto these, so
callers catch one family::

    TuneryError(Exception)
     ├── InvalidArgumentError(TuneryError, ValueError)     a bad argument (the message names it)
     │    └── InvalidExperimentError(InvalidArgumentError)  the Experiment document is invalid;
     │                                                      ``.errors`` lists every FieldError
     ├── ObjectiveSerializationError(TuneryError, TypeError) the objective cannot be pickled
     ├── NotFoundError(TuneryError, KeyError)              no such experiment or trial
     ├── AlreadyExistsError(TuneryError, ValueError)       the experiment name is taken
     ├── ExperimentFailedError(TuneryError, RuntimeError)  the experiment ended Failed;
     │                                                     ``.result`` holds what it produced
     ├── NoResultError(TuneryError, RuntimeError)          it ended without any trial reporting
     │                                                     the objective metric; ``.result``
     ├── WaitTimeoutError(TuneryError, TimeoutError)       a wait ran out of time
     ├── ReportMetricsError(TuneryError, RuntimeError)     ``report_metrics`` outside a trial, or
     │                                                     its destination failed
     ├── DriverExitedError(TuneryError, RuntimeError)     a local experiment's background
     │                                                     process exited before it completed
     ├── BackendUnavailableError(TuneryError, ConnectionError)  the database or the cluster
     │                                                     cannot be reached (retrying may help)
     ├── UnsupportedError(TuneryError, NotImplementedError)  not available on this backend
     └── MissingDependencyError(TuneryError, ImportError)  an optional package is needed
                                                           (the message names the extra)

``ExperimentFailedError`` and ``WaitTimeoutError`` keep Katib's contract for
``wait_for_experiment_condition`` (``RuntimeError`` on Failed, ``TimeoutError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TuneryError(Exception):
    """Root of the SDK's errors."""

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidArgumentError(TuneryError, ValueError):
    """An argument is invalid; the message names it and says why."""


class InvalidExperimentError(InvalidArgumentError):
    """The Experiment document is invalid. ``errors`` lists every problem (``path``,
    ``message``), one per line in ``str(err)``."""

    def __init__(self, message: str, errors: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


class ObjectiveSerializationError(TuneryError, TypeError):
    """The objective (or a constant passed with it) cannot be serialised for the trials."""


class NotFoundError(TuneryError, KeyError):
    """The named experiment or trial does not exist."""


class AlreadyExistsError(TuneryError, ValueError):
    """An experiment with that name exists (with a different spec, for ``tune``)."""


class ExperimentFailedError(TuneryError, RuntimeError):
    """The experiment ended Failed. ``result`` (a ``TuneResult`` or None) holds its trials."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class NoResultError(TuneryError, RuntimeError):
    """The experiment ended but no trial reported the objective metric; ``result`` holds
    the trials (each Failed, MetricsUnavailable or Killed)."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class WaitTimeoutError(TuneryError, TimeoutError):
    """Waiting for an experiment condition ran out of time."""


class ReportMetricsError(TuneryError, RuntimeError):
    """``report_metrics`` was called outside a trial, or its destination failed."""


class DriverExitedError(TuneryError, RuntimeError):
    """The background process running a local experiment exited before it completed; the
    message names its log. ``Client.resume_experiment`` continues the experiment."""


class BackendUnavailableError(TuneryError, ConnectionError):
    """The store or the cluster cannot be reached; retrying later may help."""


class UnsupportedError(TuneryError, NotImplementedError):
    """The operation is not available on this backend; the message says what to use."""


class MissingDependencyError(TuneryError, ImportError):
    """An optional package is needed (e.g. pandas for a DataFrame); the message says which
    extra to install (``pip install 'tunery[pandas]'``)."""
