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

No thread per trial: the watchers of one reconciler share one :class:`CollectLoop` thread that
reads every running trial's files (:meth:`metrics_collector.sources.FileTailer.step`) and
writes their queued observations (collectors made with ``background_flush=False``); a
trial's end drains its files in the caller's thread (:meth:`LogWatcher.finish`). An early-stop
decision is handed to a short-lived thread, so that stopping one trial (grace period) never
holds up the collection of the others.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
from metrics_collector.sources import FileTailer, Step
from metrics_collector.tail import read_last_lines
from tunery.store.base import Store, TrialRecord
from tunery.store.errors import StoreError, StoreUnavailableError
from tunery.trials import Objective, Observation, StopCheck, StopDecision

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


_RECORDED_ROWS = 10_000
"""Rows a fresh trial's :class:`TrialRows` keeps in memory for its summary; past that the
summary reads the trial's rows back from the store."""


class TrialRows:
    """The store as one trial's collectors see it (they share it): rows written pass through
    to the store, and, once :meth:`hold` was called (the trial ended), are kept for the
    reconciler to store with the trial's outcome (:attr:`CollectionResult.pending`).

    ``fresh``: the trial started just now, so every stored row of it was written through
    here; its summary is then taken from the rows written (up to :data:`_RECORDED_ROWS`)
    instead of read back from the store."""

    def __init__(self, store: Store, trial_name: str, *, fresh: bool) -> None:
        self._store = store
        self._trial_name = trial_name
        self._lock = threading.Lock()
        self._written: list[Observation] | None = [] if fresh else None
        self._held: list[Observation] | None = None

    @property
    def keeps_steps(self) -> bool:
        return bool(getattr(self._store, "keeps_steps", True))

    def hold(self) -> None:
        """From now on keep the rows written instead of storing them."""
        with self._lock:
            if self._held is None:
                self._held = []

    def held(self) -> tuple[Observation, ...]:
        with self._lock:
            return tuple(self._held or ())

    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        rows = [
            o
            if o.numeric is not None
            else dataclasses.replace(o, numeric=o.parse_numeric(o.value))
            for o in observations
        ]
        with self._lock:
            if self._held is not None:
                self._held += rows
                return len(rows)
        written = self._store.add_observations(trial_name, observations)
        with self._lock:
            if self._written is not None:
                self._written += rows
                if len(self._written) > _RECORDED_ROWS:
                    self._written = None  # too many to keep: read them back
        return written

    def get_observations(
        self, trial_name: str, metric_name: str | None = None
    ) -> list[Observation]:
        """The trial's rows ordered by time (stored first among equal times), as the store
        would return them once the held rows are stored."""
        with self._lock:
            written = None if self._written is None else list(self._written)
            held = list(self._held or ())
        if written is None:
            written = self._store.get_observations(trial_name)
        rows = [*written, *held]
        if metric_name:
            rows = [o for o in rows if o.metric_name == metric_name]
        return sorted(rows, key=lambda o: o.time)


_STEPS_PER_TURN = 16
"""Reads of one file per turn of the loop (each up to the tailer's read size), so that one
trial writing fast does not hold up the others."""


class CollectLoop:
    """One thread that follows the sources of every registered watcher; it runs while there
    is a watcher, waits ``linger`` seconds for the next one when none is left (trials ending
    and starting one after another keep one thread), and starts again with the next one."""

    def __init__(self, poll_interval: float = 0.05, linger: float = 1.0) -> None:
        self.poll_interval = poll_interval
        self.linger = linger
        self._lock = threading.Condition()
        self._watchers: dict[int, LogWatcher] = {}
        self._thread: threading.Thread | None = None

    def add(self, watcher: LogWatcher) -> None:
        with self._lock:
            self._watchers[id(watcher)] = watcher
            self._lock.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="collect", daemon=True)
                self._thread.start()

    def remove(self, watcher: LogWatcher) -> None:
        with self._lock:
            self._watchers.pop(id(watcher), None)

    def _run(self) -> None:
        stop = threading.Event()  # never set: an interruptible sleep
        while True:
            with self._lock:
                if not self._watchers:
                    self._lock.wait_for(lambda: bool(self._watchers), self.linger)
                watchers = list(self._watchers.values())
                if not watchers:
                    self._thread = None
                    return
            for watcher in watchers:
                try:
                    watcher.advance()
                except Exception:  # one trial's surprise must not stop the others' collection
                    log.exception("collecting trial %s failed", watcher.trial_name)
            stop.wait(self.poll_interval)


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
        loop: CollectLoop | None = None,
        polled: PolledSource | None = None,
        *,
        fresh: bool = False,
        hold_last_rows: bool = False,
    ) -> None:
        """``sources``: (path, format, filters) of each file to tail; the trial's log (its
        ``runner_handle["log"]``) is cut at the trial's recorded output end. ``loop``: the
        reconciler's shared loop (default: one of its own). ``polled``: a polled source
        (event files, an endpoint), the primary one when given; it polls from a thread of its
        own, about once a second. ``fresh``: the trial was started just now, nothing of it is
        stored yet, so its sources are not matched against the store. ``hold_last_rows``:
        the rows still queued at :meth:`finish` are returned (``CollectionResult.pending``)
        for the reconciler to store with the trial's outcome, instead of stored here."""
        self.trial_name = trial.name
        self._rows = TrialRows(store, trial.name, fresh=fresh)
        self._hold_last_rows = hold_last_rows
        self._started = time.monotonic()
        self._log_path = Path(trial.runner_handle["log"]) if polled is not None else None
        self._pairs: list[tuple[TrialCollector, FileTailer]] = []
        self._live: list[tuple[TrialCollector, FileTailer]] = []
        self._polled: tuple[TrialCollector, Poller] | None = None
        self._lock = threading.Lock()  # the loop's turn vs finish()/close()
        self._ended = False

        def stop_elsewhere(decision: StopDecision) -> None:
            threading.Thread(
                target=on_stop, args=(decision,), name=f"stop-{trial.name}", daemon=True
            ).start()

        if polled is not None:
            collector = TrialCollector(
                self._rows,
                trial.name,
                objective,
                make_parser(objective.metric_names),
                stop_check=make_stop_check(),
                on_stop=stop_elsewhere,
                hint=polled.hint,
            )
            if not fresh:
                collector.resume()  # re-attaching: skip what the store holds
            self._polled = (collector, Poller(polled.poll, collector.add).start())
        handle = trial.runner_handle
        log_path = Path(handle["log"]) if handle.get("log") else None
        for path, fmt, filters in sources:
            collector = TrialCollector(
                self._rows,
                trial.name,
                objective,
                make_parser(objective.metric_names, fmt, filters),
                stop_check=make_stop_check(),
                on_stop=stop_elsewhere,
                background_flush=False,
            )
            is_log = path == log_path
            if not fresh:  # re-attaching: skip what the store holds of the output
                end = exit_record.output_end(handle) if is_log else None
                size = path.stat().st_size if path.exists() else 0
                if end is not None:
                    size = min(size, end)
                if size:
                    collector.resume(size)
            tailer = FileTailer(
                path,
                collector.feed,
                on_reset=collector.end_of_input,
                end_offset=(lambda: exit_record.output_end(handle)) if is_log else None,
            )
            self._pairs.append((collector, tailer))
        self._live = list(self._pairs)
        self._loop = loop or CollectLoop()
        self._loop.add(self)

    def advance(self) -> None:
        """One turn of the loop: read what each source has new, write what is due."""
        with self._lock:
            if self._ended:
                return
            for pair in list(self._live):
                collector, tailer = pair
                try:
                    for _ in range(_STEPS_PER_TURN):
                        state = tailer.step()
                        if state is not Step.AGAIN:
                            break
                    if state is Step.DONE:
                        self._live.remove(pair)
                    # a trial's first rows wait the flush interval too (not written at once):
                    # those of a short trial go into the store with its outcome
                    if collector.flush_due and (
                        time.monotonic() - self._started >= collector.flush_interval
                    ):
                        collector.flush()
                except (StoreUnavailableError, OSError) as exc:
                    log.warning("trial %s: collecting waits (%s)", self.trial_name, exc)
                except (StoreError, FlushError, ValueError) as exc:
                    log.error("trial %s: collecting failed: %s", self.trial_name, exc)

    @classmethod
    def factory(
        cls, store: Store, document: Mapping[str, Any], *, hold_last_rows: bool = False
    ) -> WatcherFactory:
        """Watchers for the trials of one experiment, all served by one :class:`CollectLoop`
        (``hold_last_rows``: see :class:`LogWatcher`)."""
        loop = CollectLoop()
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
            /,
            *,
            fresh: bool = False,
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
            return cls(
                store,
                trial,
                objective,
                sources,
                make_stop_check,
                on_stop,
                loop,
                polled,
                fresh=fresh,
                hold_last_rows=hold_last_rows,
            )

        return make

    def finish(self) -> CollectionResult:
        """Drain every source, store the rest and summarise; with ``hold_last_rows`` the rest
        comes back in :attr:`CollectionResult.pending` instead, for the caller to store with
        the trial's outcome (the trial's files keep them until then). A trial watched since
        its start is summarised from the rows collected, without reading them back.

        Raises:
            StoreUnavailableError: a re-attached trial's rows could not be read back. The
                store given to the watcher is expected to wait out outages itself (the local
                controller's :class:`~tunery.store.retrying.RetryingStore`), so this is not
                retried here; the trial's files keep the rows for the next watcher.
        """
        self._loop.remove(self)
        with self._lock:
            self._ended = True
        if self._polled is not None:
            poller = self._polled[1]
            poller.stop(drain=True)
            poller.join()
        collectors = [] if self._polled is None else [self._polled[0]]
        for collector, tailer in self._pairs:
            tailer.drain()
            collectors.append(collector)
        if self._hold_last_rows:
            self._rows.hold()  # the last rows go into the store with the trial's outcome
        for collector in collectors:
            collector.end_of_input()
            try:
                collector.close(timeout=0)
            except FlushError as exc:
                if isinstance(exc.__cause__, StoreUnavailableError):
                    raise StoreUnavailableError(str(exc)) from exc
                raise
        primary = collectors[0]
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
            pending=self._rows.held(),
        )

    def close(self) -> None:
        """Stop at once (the controller is leaving). Rows not yet stored stay in the trial's
        files, which the next watcher of this trial re-reads (after ``tunery resume``)."""
        self._loop.remove(self)
        with self._lock:
            self._ended = True
        collectors = []
        if self._polled is not None:
            collector, poller = self._polled
            poller.stop(drain=False)
            poller.join(timeout=5)
            collectors.append(collector)
        for collector, tailer in self._pairs:
            tailer.stop(drain=False)
            tailer.close_file()
            collectors.append(collector)
        for collector in collectors:
            try:
                collector.close(timeout=0)
            except FlushError as exc:
                log.warning("%s", exc)
