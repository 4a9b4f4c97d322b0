"""How local trials run Katib's TensorFlowEvent and PrometheusMetric collectors.

Called by the reconciler (:meth:`controller.reconcile.Reconciler._launch`, to point a trial at
its own event folder), by the collector wiring (:mod:`controller.collecting`, to read it or
scrape the trial's endpoint) and by :func:`controller.settings_check.load_checked` (to refuse
what cannot run locally before anything is stored). Pure functions of the Experiment document
and the trial's log path, so the reconciler and the watcher agree without storing more.

- **TensorFlowEvent**: parallel trials must not write into one folder. The longest of
  ``fileSystemPath.path`` and its parent folders that appears in the primary container's
  command, args or env values (e.g. ``--log-path=/logs`` for ``path: /logs/test``, as in
  Katib's TFJob-with-summaries example) is replaced there by a per-trial folder
  (:func:`controller.paths.local_tfevent_dir`), and the collector reads the matching subfolder
  of it. When none appears, the configured folder itself is read, and only event files
  written since the trial started count (files left there by earlier trials are not read).
- **PrometheusMetric**: the trial's endpoint is ``http://127.0.0.1:<port><path>`` from
  ``source.httpGet``. Trials share the machine's ports, so local runs take one trial at a time
  (``parallelTrialCount`` 1).
- **Custom**: runs only on Kubernetes (its collector is a container).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.paths import local_tfevent_dir
from controller.templating import TemplateError, primary_container
from metrics_collector.errors import MissingDependencyError
from metrics_collector.polling import Poll
from metrics_collector.prometheus import PrometheusScraper, endpoint_url
from metrics_collector.tfevents import TFEventReader, require_tensorboard
from tunery.experiment import FieldError
from tunery.experiment.collector import (
    DEFAULT_PROMETHEUS_PATH,
    DEFAULT_PROMETHEUS_PORT,
    DEFAULT_TFEVENT_DIR_PATH,
)


@dataclass(frozen=True)
class TFEventPlan:
    """Where a trial writes its event files and where the collector reads them."""

    replace: tuple[str, str] | None
    """(configured folder or ancestor, per-trial folder) to substitute in the container."""
    directory: Path
    """The folder the collector reads."""
    shared: bool
    """True when the configured folder is read as is (pre-existing files are ignored)."""


def _collector(document: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    spec = document["spec"].get("metricsCollectorSpec") or {}
    return str((spec.get("collector") or {}).get("kind") or "StdOut"), spec.get("source") or {}


def _container_texts(document: Mapping[str, Any]) -> list[str]:
    template = document["spec"].get("trialTemplate") or {}
    try:
        container = primary_container(
            template.get("trialSpec") or {}, str(template.get("primaryContainerName", ""))
        )
    except TemplateError:
        return []
    texts = [str(c) for key in ("command", "args") for c in container.get(key) or []]
    texts += [str(e["value"]) for e in container.get("env") or [] if "value" in e]
    return texts


def tfevent_plan(document: Mapping[str, Any], log_path: Path) -> TFEventPlan | None:
    """The TensorFlowEvent plan of a trial whose log is ``log_path``; None for other kinds."""
    kind, source = _collector(document)
    if kind != "TensorFlowEvent":
        return None
    configured = str((source.get("fileSystemPath") or {}).get("path") or DEFAULT_TFEVENT_DIR_PATH)
    configured = posixpath.normpath(configured)
    texts = _container_texts(document)
    candidate = configured
    while candidate not in ("/", ""):
        if any(candidate in text for text in texts):
            private = local_tfevent_dir(log_path)
            rest = posixpath.relpath(configured, candidate)
            directory = private if rest == "." else private / rest
            return TFEventPlan((candidate, str(private)), directory, shared=False)
        candidate = posixpath.dirname(candidate)
    return TFEventPlan(None, Path(configured), shared=True)


def prometheus_url(document: Mapping[str, Any]) -> str | None:
    """The endpoint a local PrometheusMetric trial is scraped at; None for other kinds."""
    kind, source = _collector(document)
    if kind != "PrometheusMetric":
        return None
    http = source.get("httpGet") or {}
    return endpoint_url(
        http.get("port") or DEFAULT_PROMETHEUS_PORT, http.get("path") or DEFAULT_PROMETHEUS_PATH
    )


def local_problems(document: Mapping[str, Any]) -> list[FieldError]:
    """What the experiment asks of its collector that local runs cannot do; [] if nothing."""
    kind, _ = _collector(document)
    where = "spec.metricsCollectorSpec.collector.kind"
    if kind == "Custom":
        return [
            FieldError(
                where,
                "Custom collectors run only on Kubernetes (the collector is a container); "
                "locally use StdOut, File, TensorFlowEvent, PrometheusMetric or Push",
            )
        ]
    parallel = document["spec"].get("parallelTrialCount") or 1
    if kind == "PrometheusMetric" and int(parallel) > 1:
        return [
            FieldError(
                "spec.parallelTrialCount",
                f"{parallel}: with the PrometheusMetric collector local trials take one "
                "at a time (every trial would serve its metrics on the same port); set 1, "
                "or run the experiment on Kubernetes",
            )
        ]
    if kind == "TensorFlowEvent":
        try:
            require_tensorboard()
        except MissingDependencyError as e:
            return [FieldError(where, str(e))]
    return []


@dataclass(frozen=True)
class PolledSource:
    """A source the collector polls (event files, an endpoint) and how it says so."""

    poll: Poll
    hint: str
    """How the objective is expected, for the MetricsUnavailable message."""


def polled_source(
    document: Mapping[str, Any],
    log_path: Path,
    metric_names: tuple[str, ...],
    started: dt.datetime | None = None,
) -> PolledSource | None:
    """The TensorFlowEvent or PrometheusMetric source of a trial; None for other kinds.

    ``started``: the trial's start; in a shared event folder, files last written before it
    are not the trial's.

    Raises:
        MissingDependencyError: tensorboard is not installed (TensorFlowEvent).
        MetricsFormatError: a metric name is not a Prometheus sample name.
    """
    plan = tfevent_plan(document, log_path)
    if plan is not None:
        since = None
        if plan.shared and started is not None:
            aware = started if started.tzinfo else started.replace(tzinfo=dt.UTC)  # stored as UTC
            since = aware.timestamp()
        reader = TFEventReader(plan.directory, metric_names, ignore_before=since)
        return PolledSource(
            reader.poll,
            f"scalar summaries tagged {metric_names[0]!r} in TensorFlow event files under "
            f"{plan.directory}",
        )
    url = prometheus_url(document)
    if url is not None:
        scraper = PrometheusScraper(url, metric_names)
        return PolledSource(
            scraper.poll, f"a sample {metric_names[0]!r} served at {url} while the trial ran"
        )
    return None
