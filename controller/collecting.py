"""The local sidecar: collect a running trial's metrics from its files into the store.

Created by the reconciler (through :meth:`LogWatcher.factory`) for every trial it starts or
re-attaches to. Which files are tailed follows the Experiment's ``metricsCollectorSpec``:

- ``StdOut`` (default): the trial's log file (its stdout and stderr), with Katib's default
  ``name=value`` filter or the spec's ``metricsFormat`` regexes;
- ``File``: the trial's own copy of ``fileSystemPath.path`` (see
  ``controller.paths.local_metrics_path``), TEXT or JSON;
- ``Push``: nothing is parsed from the output;
- ``TensorFlowEvent`` / ``PrometheusMetric``: the trial's event files or its metrics endpoint,
  polled (:mod:`controller.local_collectors`);

plus, always, the JSON-lines file ``report_metrics`` appends to (``TUNERY_METRICS_FILE``), so
pushed metrics also drive early stopping. The log is read only up to where the trial's output
ended (:func:`controller.runners.exit_record.output_end`): what leftover processes of the trial
wrote after its main process exited is never collected. Every source starts from the beginning
of its file and skips what the store already holds, which makes re-attaching after a
controller crash exact: no observation lost, none doubled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.local_collectors import PolledSource, polled_source
from controller.paths import local_metrics_path, push_metrics_path
from controller.reconcile import CollectionResult, WatcherFactory
from controller.runners import exit_record
from metrics_collector.collector import TrialCollector
from metrics_collector.errors import FlushError
from metrics_collector.parsers import make_parser
from metrics_collector.polling import Poller
from metrics_collector.sources import FileTailer
from metrics_collector.tail import read_last_lines
from tunery.store.base import Store, TrialRecord
from tunery.store.errors import StoreUnavailableError
from tunery.trials import Objective, StopCheck, StopDecision

log = logging.getLogger(__name__)


def collector_kind(document: Mapping[str, Any]) -> str:
    spec = document["spec"].get("metricsCollectorSpec") or {}
    return str((spec.get("collector") or {}).get("kind", "StdOut"))


def file_collector_path(document: Mapping[str, Any]) -> str | None:
    """``fileSystemPath.path`` of a File collector, else None."""
    if collector_kind(document) != "File":
        return None
    source = (document["spec"].get("metricsCollectorSpec") or {}).get("source") or {}
    return str((source.get("fileSystemPath") or {}).get("path") or "") or None


class LogWatcher:
    """Tails one trial's metric sources into the store until :meth:`finish`."""

    def __init__(
        self,
        store: Store,
        trial: TrialRecord,
        objective: Objective,
        sources: list[tuple[Path, str, tuple[str, ...]]],
        make_stop_check: Callable[[], StopCheck | None],
        on_stop: Callable[[StopDecision], None],
        poll_interval: float = 0.05,
        polled: PolledSource | None = None,
    ) -> None:
        """``sources``: (path, format, filters) of each file to tail; the trial's log (its
        ``runner_handle["log"]``) is cut at the trial's recorded output end. ``polled``: a
        polled source (event files, an endpoint), the primary one when given."""
        self.trial_name = trial.name
        self._log_path = Path(trial.runner_handle["log"]) if polled is not None else None
        self._pairs: list[tuple[TrialCollector, FileTailer | Poller]] = []
        if polled is not None:
            collector = TrialCollector(
                store,
                trial.name,
                objective,
                make_parser(objective.metric_names),
                stop_check=make_stop_check(),
                on_stop=on_stop,
                hint=polled.hint,
            )
            collector.resume()  # re-attaching: skip what the store holds
            self._pairs.append((collector, Poller(polled.poll, collector.add).start()))
        handle = trial.runner_handle
        log_path = Path(handle["log"]) if handle.get("log") else None
        for path, fmt, filters in sources:
            collector = TrialCollector(
                store,
                trial.name,
                objective,
                make_parser(objective.metric_names, fmt, filters),
                stop_check=make_stop_check(),
                on_stop=on_stop,
            )
            is_log = path == log_path
            end = exit_record.output_end(handle) if is_log else None
            size = path.stat().st_size if path.exists() else 0
            if end is not None:
                size = min(size, end)
            if size:  # re-attaching: skip what the store holds from the output so far
                collector.resume(size)
            tailer = FileTailer(
                path,
                collector.feed,
                on_reset=collector.end_of_input,
                poll_interval=poll_interval,
                end_offset=(lambda: exit_record.output_end(handle)) if is_log else None,
            )
            self._pairs.append((collector, tailer.start()))

    @classmethod
    def factory(cls, store: Store, document: Mapping[str, Any]) -> WatcherFactory:
        kind = collector_kind(document)
        spec = document["spec"].get("metricsCollectorSpec") or {}
        source = spec.get("source") or {}
        filters = tuple((source.get("filter") or {}).get("metricsFormat") or ())
        file_format = str((source.get("fileSystemPath") or {}).get("format") or "TEXT")

        def make(
            trial: TrialRecord,
            objective: Objective,
            make_stop_check: Callable[[], StopCheck | None],
            on_stop: Callable[[StopDecision], None],
        ) -> LogWatcher:
            log_path = Path(trial.runner_handle["log"])
            sources: list[tuple[Path, str, tuple[str, ...]]] = []
            if kind == "StdOut":
                sources.append((log_path, "TEXT", filters))
            elif kind == "File":
                fmt_filters = () if file_format.upper() == "JSON" else filters
                sources.append((local_metrics_path(log_path), file_format, fmt_filters))
            sources.append((push_metrics_path(log_path), "JSON", ()))
            polled = polled_source(document, log_path, objective.metric_names, trial.start_time)
            return cls(store, trial, objective, sources, make_stop_check, on_stop, polled=polled)

        return make

    def finish(self) -> CollectionResult:
        """Drain every source and store the rest.

        Raises:
            StoreUnavailableError: the rest could not be stored. The store given to the
                watcher is expected to wait out outages itself (the local controller's
                :class:`~tunery.store.retrying.RetryingStore`), so this is not retried here;
                the trial's files keep the rows for the next watcher.
        """
        for _, tailer in self._pairs:
            tailer.stop(drain=True)
        for collector, tailer in self._pairs:
            tailer.join()
            collector.end_of_input()
            try:
                collector.close(timeout=0)
            except FlushError as exc:
                if isinstance(exc.__cause__, StoreUnavailableError):
                    raise StoreUnavailableError(str(exc)) from exc
                raise
        primary = self._pairs[0][0]
        summary = primary.summarize()
        if self._log_path is not None and not summary.last_lines:
            # a polled source (event files, an endpoint) has no output of its own: quote the log
            try:
                lines = tuple(read_last_lines(self._log_path))
            except OSError:
                lines = ()
            summary = dataclasses.replace(summary, last_lines=lines)
        return CollectionResult(
            metrics=summary.observation["metrics"],
            objective_available=not summary.objective_missing,
            unavailable_message=""
            if not summary.objective_missing
            else (summary.unavailable_message()),
        )

    def close(self) -> None:
        """Stop at once (the controller is leaving). Rows not yet stored stay in the trial's
        files, which the next watcher of this trial re-reads (after ``tunery resume``)."""
        for collector, tailer in self._pairs:
            tailer.stop(drain=False)
            tailer.join(timeout=5)
            try:
                collector.close(timeout=0)
            except FlushError as exc:
                log.warning("%s", exc)
