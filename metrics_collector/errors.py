"""Errors of the metrics collector package; each boundary maps them once.

``dbmanager`` maps them to gRPC status codes, ``sidecar`` to exit codes and log lines, the
controller to trial conditions. Store errors (``tunery.store.errors``) pass through unchanged.

::

    CollectorError(Exception)
     ├── MetricsFormatError(CollectorError, ValueError)       bad metricsFormat regex / format
     ├── InvalidMetricError(CollectorError, ValueError)       report_metrics: bad name or value
     ├── InvalidTimestampError(CollectorError, ValueError)    not an RFC3339 timestamp
     ├── InvalidRequestError(CollectorError, ValueError)      DBManager: empty trial/metric
     ├── InvalidStopRuleError(CollectorError, ValueError)     sidecar: bad -stop-rule
     ├── MissingDependencyError(CollectorError, ImportError)  TensorFlowEvent without tensorboard
     ├── PushError(CollectorError, RuntimeError)              report_metrics: no trial name, or
     │                                                        the destination refused/unreachable
     └── FlushError(CollectorError)                           observations could not be written;
                                                              the trial's log file still holds
                                                              them and ``replay`` adds them later
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of the metrics collector's errors."""


class MetricsFormatError(CollectorError, ValueError):
    """A metrics filter (regex) or format is unusable; the message names it."""


class InvalidMetricError(CollectorError, ValueError):
    """A pushed metric has a bad name or a value that is not a number; the message names it."""


class InvalidTimestampError(CollectorError, ValueError):
    """A timestamp is not RFC3339 (e.g. ``2024-05-01T12:00:00.5Z``); the message quotes it."""


class InvalidRequestError(CollectorError, ValueError):
    """A DBManager request field is missing or malformed; the message names the field."""


class InvalidStopRuleError(CollectorError, ValueError):
    """An early-stopping rule does not parse; the message quotes it."""


class MissingDependencyError(CollectorError, ImportError):
    """A collector kind needs a package that is not installed; the message says which."""


class PushError(CollectorError, RuntimeError):
    """``report_metrics`` cannot find its trial or destination, or the destination failed."""


class FlushError(CollectorError):
    """Collected observations could not be written to the store (retryable later).

    Nothing is lost: the trial's log file is the write-ahead log, and
    ``TrialCollector.replay(log_path)`` adds exactly the missing observations.
    """

    def __init__(self, message: str, *, pending: int = 0) -> None:
        super().__init__(message)
        self.pending = pending
