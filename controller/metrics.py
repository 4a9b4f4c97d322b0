"""The controller's Prometheus metrics: Katib's experiment and trial counters, tunery's latencies.

Called by :class:`controller.reconcile.Reconciler` (trial and experiment transitions, pass and
GetSuggestions latencies), by ``controller.local`` (an experiment submitted) and by the operator
(``controller.operator.core``: admitted, refused, deleted). Served over HTTP by ``tunery run
--metrics-port`` and ``tunery operator`` (:func:`tunery.telemetry.serve_metrics`).

Counter names, labels and help text are Katib's (``pkg/controller.v1beta1/{experiment,trial}/
util/prometheus_metrics.go``): ``katib_experiment_{created,succeeded,failed,deleted}_total`` and
``katib_trial_{created,succeeded,failed,metrics_unavailable,deleted}_total``, each by
``namespace``; the gauges ``katib_experiments_current`` and ``katib_trials_current`` by
``namespace`` and ``status`` (the last condition) are read from the store at scrape time
(:class:`StoreGauges`). A transition is counted where the store records it, by the
conditional update that made it (one writer wins), never per poll; a restarted process starts
its counters at zero, as Katib's do. tunery adds ``tunery_trial_early_stopped_total``,
``tunery_trial_killed_total`` and the histograms ``tunery_reconcile_duration_seconds`` and
``tunery_get_suggestions_duration_seconds`` (by ``algorithm``, seen from the controller, network
included).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller import status as experiment_status
from tunery.store.base import Store
from tunery.trials import TrialCondition

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# the experiment status counters of Katib's status document, by trial condition
_TRIAL_STATUS_KEYS = {
    "Created": "trialsPending",
    "Running": "trialsRunning",
    "Succeeded": "trialsSucceeded",
    "Failed": "trialsFailed",
    "Killed": "trialsKilled",
    "EarlyStopped": "trialsEarlyStopped",
    "MetricsUnavailable": "trialMetricsUnavailable",
}


class ControllerMetrics:
    """The counters and histograms of one registry (the process's default unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry

        def counter(name: str, help_text: str) -> Counter:
            return Counter(name, help_text, ["namespace"], registry=self.registry)

        # Counter appends _total to the exposed name: these are exactly Katib's names
        self.experiment_created = counter(
            "katib_experiment_created", "The total number of created experiments"
        )
        self.experiment_succeeded = counter(
            "katib_experiment_succeeded", "The total number of succeeded experiments"
        )
        self.experiment_failed = counter(
            "katib_experiment_failed", "The total number of failed experiments"
        )
        self.experiment_deleted = counter(
            "katib_experiment_deleted", "The total number of deleted experiments"
        )
        self.trial_created = counter("katib_trial_created", "The total number of created trials")
        self.trial_deleted = counter("katib_trial_deleted", "The total number of deleted trials")
        self._trial_ended = {
            TrialCondition.SUCCEEDED: counter(
                "katib_trial_succeeded", "The total number of succeeded trials"
            ),
            TrialCondition.FAILED: counter(
                "katib_trial_failed", "The total number of failed trials"
            ),
            TrialCondition.METRICS_UNAVAILABLE: counter(
                "katib_trial_metrics_unavailable",
                "The total number of metrics unavailable trials",
            ),
            TrialCondition.EARLY_STOPPED: counter(
                "tunery_trial_early_stopped", "The total number of early stopped trials"
            ),
            TrialCondition.KILLED: counter(
                "tunery_trial_killed", "The total number of killed trials"
            ),
        }
        self.reconcile_seconds = Histogram(
            "tunery_reconcile_duration_seconds",
            "Duration of one reconcile pass over an experiment",
            ["namespace"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.suggestion_seconds = Histogram(
            "tunery_get_suggestions_duration_seconds",
            "Duration of a GetSuggestions call made by the controller, network included",
            ["algorithm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def trial_ended(self, namespace: str, condition: TrialCondition) -> None:
        """Count a trial that has just reached ``condition`` (terminal conditions only)."""
        counter = self._trial_ended.get(condition)
        if counter is not None:
            counter.labels(namespace).inc()

    def experiment_ended(self, namespace: str, condition_type: str) -> None:
        """Count an experiment that has just become Succeeded or Failed."""
        if condition_type == "Succeeded":
            self.experiment_succeeded.labels(namespace).inc()
        elif condition_type == "Failed":
            self.experiment_failed.labels(namespace).inc()

    @contextmanager
    def timed(self, histogram: Histogram, label: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            histogram.labels(label).observe(time.perf_counter() - started)


_default: ControllerMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> ControllerMetrics:
    """The process-wide metrics on prometheus_client's default registry (created once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ControllerMetrics()
        return _default


class StoreGauges(Collector):
    """``katib_experiments_current`` and ``katib_trials_current`` read at scrape time.

    ``experiments`` returns (namespace, current condition type or None, status document) per
    experiment; trials are counted from the status document's per-condition counters, so a
    scrape costs one read of the experiments, not of their trials.
    """

    def __init__(
        self, experiments: Callable[[], list[tuple[str, str | None, Mapping[str, Any]]]]
    ) -> None:
        self._experiments = experiments

    def collect(self) -> Iterator[GaugeMetricFamily]:
        experiments = GaugeMetricFamily(
            "katib_experiments_current",
            "The number of current katib experiments in the cluster",
            labels=["namespace", "status"],
        )
        trials = GaugeMetricFamily(
            "katib_trials_current",
            "The number of current katib trials in the cluster",
            labels=["namespace", "status"],
        )
        by_experiment: dict[tuple[str, str], int] = {}
        by_trial: dict[tuple[str, str], int] = {}
        try:
            read = self._experiments()
        except Exception as exc:  # the store is down: the counters still answer
            log.warning("katib_*_current not available: %s", exc)
            read = []
        for namespace, condition, status in read:
            key = (namespace, condition or "Unknown")
            by_experiment[key] = by_experiment.get(key, 0) + 1
            for trial_status, field in _TRIAL_STATUS_KEYS.items():
                count = int(status.get(field) or 0)
                if count:
                    tkey = (namespace, trial_status)
                    by_trial[tkey] = by_trial.get(tkey, 0) + count
        for (namespace, condition), count in sorted(by_experiment.items()):
            experiments.add_metric([namespace, condition], count)
        for (namespace, trial_status), count in sorted(by_trial.items()):
            trials.add_metric([namespace, trial_status], count)
        yield experiments
        yield trials

    def describe(self) -> list[Any]:
        return []  # read at scrape time only (no store read when registered)


def store_gauges(store: Store) -> StoreGauges:
    """:class:`StoreGauges` over the experiments of ``store``, in every namespace."""

    def read() -> list[tuple[str, str | None, Mapping[str, Any]]]:
        found: list[tuple[str, str | None, Mapping[str, Any]]] = []
        for namespace in store.list_namespaces():
            for record in store.in_namespace(namespace).list_experiments():
                current = experiment_status.current_condition(record.status)
                condition = None if current is None else current["type"]
                found.append((namespace, condition, record.status))
        return found

    return StoreGauges(read)
