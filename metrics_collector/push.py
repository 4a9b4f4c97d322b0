"""``report_metrics``: a trial pushes its metrics (re-exported as ``tunery.report_metrics``).

Called from user training code, inside a trial started by tunery (locally or on Kubernetes)
or by Katib (``kind: Push``). The trial is named by ``$TUNERY_TRIAL_NAME``, else Katib's
``$KATIB_TRIAL_NAME``. The destination is the first one configured:

1. ``$TUNERY_METRICS_FILE`` (local trials): one JSON line per call is appended to the file
   (created 0600 if missing), which the local controller tails as a JSON-lines source, so
   pushed metrics also drive early stopping, and survive a controller crash like printed ones.
2. A DBManager over gRPC (``ReportObservationLog``, as ``katib.report_metrics``):
   ``$TUNERY_DB_MANAGER_ADDRESS`` (the deprecated ``$TUNERY_DBMANAGER_ADDRESS`` still works),
   else Katib's ``katib-db-manager.kubeflow:6789``. Katib's wire has no step: the server
   numbers rows in arrival order.

Values must be numbers (ints, floats, numpy/torch scalars, or numeric strings as Katib
accepts); NaN and infinities are stored but never chosen as best.

A trial never writes to the database itself: it holds no database URL or password (trials do
not inherit the controller's environment, see ``controller.runners.trial_env``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from metrics_collector.errors import InvalidMetricError, PushError
from metrics_collector.parsers import JSON_STEP_KEYS, JSON_TIMESTAMP_KEY
from tunery.files import open_private
from tunery.store.errors import StoreError
from tunery.trials import Observation

TRIAL_NAME_ENV = ("TUNERY_TRIAL_NAME", "KATIB_TRIAL_NAME")
METRICS_FILE_ENV = "TUNERY_METRICS_FILE"
DEFAULT_TIMEOUT = 120.0

_cache_lock = threading.Lock()
_clients: dict[str, Any] = {}


def report_metrics(
    metrics: Mapping[str, Any],
    step: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Record ``metrics`` (name → number) for the current trial, optionally at ``step``.

    >>> report_metrics({"loss": 0.25, "accuracy": 0.91}, step=3)  # doctest: +SKIP

    Raises:
        InvalidMetricError: a name is empty, a value is not a number (the key is named), or
            ``step`` is not a non-negative int.
        PushError: no trial name in the environment, or the destination failed.
    """
    values = _metric_texts(metrics)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise InvalidMetricError(f"step must be a non-negative int, got {step!r}")
    trial = trial_name_from_env()
    now = time.time()
    if path := os.environ.get(METRICS_FILE_ENV):
        _append_json_line(path, values, step, now)
    else:
        _report_dbmanager(trial, values, now, timeout)


def trial_name_from_env() -> str:
    """``$TUNERY_TRIAL_NAME`` or ``$KATIB_TRIAL_NAME``.

    Raises:
        PushError: neither is set (not running inside a trial).
    """
    for key in TRIAL_NAME_ENV:
        if name := os.environ.get(key):
            return name
    raise PushError(
        "report_metrics() runs inside a trial: set TUNERY_TRIAL_NAME (tunery sets it for its "
        "trials; Katib sets KATIB_TRIAL_NAME)"
    )


def _metric_texts(metrics: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(metrics, Mapping) or not metrics:
        raise InvalidMetricError(
            f"metrics must be a non-empty mapping of name to number, got {metrics!r}"
        )
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise InvalidMetricError(f"metric name {name!r} must be a non-empty, unpadded string")
        out[name] = metric_text(name, value)
    return out


def metric_text(name: str, value: Any) -> str:
    """The text stored for a pushed value: ints as ints, floats round-trip exactly.

    Raises:
        InvalidMetricError: the value is not a number (booleans are not).
    """
    if isinstance(value, bool):
        raise InvalidMetricError(f"metric {name!r}: {value!r} is a boolean, not a number")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            float(text)
        except ValueError:
            raise InvalidMetricError(f"metric {name!r}: {value!r} is not a number") from None
        return text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidMetricError(
            f"metric {name!r}: {value!r} ({type(value).__name__}) is not a number"
        ) from None
    if math.isfinite(number) and number.is_integer() and _is_integer_like(value):
        return str(int(number))
    return repr(number)


def _is_integer_like(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)  # numpy/torch integer scalars
    return dtype is not None and str(dtype).startswith(("int", "uint", "torch.int", "torch.uint"))


def _append_json_line(path: str, values: dict[str, str], step: int | None, now: float) -> None:
    reserved = {JSON_TIMESTAMP_KEY, *JSON_STEP_KEYS} & values.keys()
    if reserved:
        raise InvalidMetricError(
            f"metric name {sorted(reserved)[0]!r} is reserved in the metrics file (timestamp, "
            "step and epoch carry the report's time and step); rename the metric"
        )
    record: dict[str, Any] = {JSON_TIMESTAMP_KEY: now}
    if step is not None:
        record["step"] = step
    record.update(values)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of parallel ranks never mix
        finally:
            os.close(fd)
    except OSError as e:
        raise PushError(f"cannot append metrics to {path} ({METRICS_FILE_ENV}): {e}") from e


def _report_dbmanager(trial: str, values: dict[str, str], now: float, timeout: float) -> None:
    from metrics_collector.dbclient import DBManagerClient, default_dbmanager_address

    address = default_dbmanager_address()
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    with _cache_lock:
        client = _clients.get(address)
        if client is None:
            client = _clients[address] = DBManagerClient(address, timeout=timeout)
    client.timeout = timeout
    try:
        client.add_observations(
            trial, [Observation.of(name, text, 0, when) for name, text in values.items()]
        )
    except StoreError as e:
        raise PushError(f"cannot report metrics of trial {trial}: {e}") from e
