"""``report_metrics``: report a trial's metrics from inside it (the objective or a script).

Part of the SDK (exported as ``tunery.report_metrics``). Locally the values go to the trial's
metrics file, which the controller tails; on a cluster, to the DBManager. The transport is
:mod:`metrics_collector.push`; this module maps its errors to the SDK's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunery.sdk.errors import InvalidArgumentError, ReportMetricsError


def report_metrics(
    metrics: Mapping[str, Any], step: int | None = None, *, timeout: float = 120.0
) -> None:
    """Report metrics of the current trial, e.g. once per epoch.

    Call it from the objective (or any training script run as a trial): locally the values go
    to the trial's metrics file, which the controller tails, so they drive early stopping as
    they arrive; on a cluster they go to the DBManager (as ``katib.report_metrics``).

    Args:
        metrics: metric names to numbers (ints, floats, numpy/torch scalars).
        step: the step (epoch) these values belong to; without one, each metric's reports
            are numbered in order. Early stopping compares trials at the same step.
        timeout: seconds to wait for a remote DBManager.

    Raises:
        InvalidArgumentError: an empty name, a value that is not a number, a bad step.
        ReportMetricsError: not running inside a trial, or the destination failed.
    """
    from metrics_collector import push
    from metrics_collector.errors import InvalidMetricError, PushError

    try:
        push.report_metrics(metrics, step, timeout=timeout)
    except InvalidMetricError as exc:
        raise InvalidArgumentError(str(exc)) from None
    except PushError as exc:
        raise ReportMetricsError(str(exc)) from None
