"""TrialCollector: one trial's parsed metrics into the store, batched yet visible within 1 s.

Called by the local controller (one collector per trial source: the output pipe through
:class:`metrics_collector.sources.PipeReader`, the pushed-metrics file through
:class:`metrics_collector.sources.FileTailer`) and by the Kubernetes sidecar
(:mod:`metrics_collector.sidecar`), which passes a DBManager client instead of a store.

Lifecycle::

    collector = TrialCollector(store, "trial-1", objective, make_parser(["loss"]),
                               stop_check=stopper_for(trial), on_stop=runner_stop)
    reader = PipeReader(proc.stdout, log_path, collector.feed).start()   # as output arrives
    reader.join()
    summary = collector.finish()           # flushes, then summarises from the store
    if summary.objective_missing:
        mark MetricsUnavailable with summary.unavailable_message()

Writes: observations queue in memory; a flush thread writes them as one multi-row insert as
soon as they arrive but at most every ``flush_interval`` (0.25 s), or at once when
``batch_size`` are waiting. Store outages are retried with backoff; nothing is dropped.

Write-ahead log: the trial's log file holds every byte the parser saw. After a crash,
``replay(log_path)`` re-parses it (the parser is deterministic) and adds exactly the
observations the store lacks: the store's rows are taken away from the parsed ones as a
multiset keyed by (metric, step, value), so replaying twice adds nothing, and nothing is lost
or doubled even when another source wrote rows for the same trial. ``resume()`` does the same
for a collector that keeps tailing a file after a restart (the sidecar).

Early stopping: ``stop_check`` (the controller binds it to the in-process stopper or a gRPC
EarlyStopping client; this package never imports ``earlystop``) sees every observation of the
``stop_metrics`` (default: the objective) so far, as they arrive. When it says stop, the
collector flushes and calls ``on_stop(decision)`` once; the controller stops the process and
records EarlyStopped. What was collected is kept, and collection continues until the output
ends.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from metrics_collector.errors import CollectorError, FlushError
from metrics_collector.parsers import DEFAULT_FILTER, MetricsFormat, Parser, ParseStats
from metrics_collector.tail import DEFAULT_LINES, OutputTail
from tunery.store.errors import StoreUnavailableError
from tunery.trials import (
    ZERO_TIME,
    MetricSummary,
    Objective,
    Observation,
    StopCheck,
    StopDecision,
    summarize_metrics,
)

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 0.25
DEFAULT_BATCH_SIZE = 1000
REPLAY_CHUNK = 1 << 20


class ObservationSink(Protocol):
    """Where a collector writes: a :class:`tunery.store.Store`, or a DBManager client.

    A sink whose rows do not keep their step (Katib's DBManager wire has no step field) sets
    ``keeps_steps = False``; replays then match rows by (metric, value) only.
    """

    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int: ...

    def get_observations(
        self, trial_name: str, metric_name: str | None = None
    ) -> list[Observation]: ...


@dataclass(frozen=True)
class CollectionSummary:
    """What a trial reported, as the controller needs it at the end.

    ``metrics`` holds Katib's min/max/latest per objective/additional metric, computed from
    every stored row of the trial (all sources); ``objective_value`` is the value the
    objective's metric strategy picks, None when unavailable, non-numeric or NaN/inf.
    """

    trial_name: str
    objective: Objective
    metrics: Mapping[str, MetricSummary]
    objective_value: float | None
    stats: ParseStats
    written: int = 0
    stop_decision: StopDecision | None = None
    last_lines: tuple[str, ...] = ()
    source_hint: str = ""
    missing: str = "no output line reported it"
    """Why the objective is missing when the parser saw nothing wrong."""

    @property
    def objective_missing(self) -> bool:
        """True when the trial must end MetricsUnavailable."""
        return self.objective_value is None

    @property
    def observation(self) -> dict[str, Any]:
        """Katib's ``trial.status.observation``: ``{"metrics": [{name, min, max, latest}]}``."""
        return {
            "metrics": [
                {"name": m.name, "min": m.min, "max": m.max, "latest": m.latest}
                for m in self.metrics.values()
            ]
        }

    def unavailable_message(self) -> str:
        """Why the objective is missing, with the last lines of output (MetricsUnavailable)."""
        name = self.objective.metric_name
        summary = self.metrics.get(name)
        strategy = self.objective.strategy(name)
        chosen = summary.select(strategy) if summary else "unavailable"
        if chosen != "unavailable":
            detail = f"its {strategy.value} value {chosen!r} is not a finite number"
        else:
            detail = self.stats.describe(name) or self.missing
            if self.source_hint:
                detail += f"; expected {self.source_hint}"
        return metrics_unavailable_message(name, self.last_lines, detail=detail)


def metrics_unavailable_message(
    metric_name: str, last_lines: Sequence[str], *, detail: str = ""
) -> str:
    """The MetricsUnavailable message: names the metric, says why, quotes the output's end.

    >>> print(metrics_unavailable_message("loss", ["epoch 1", "done"], detail="never printed"))
    Metrics are not available: objective metric 'loss' was not reported (never printed).
    Last 2 lines of output:
        epoch 1
        done
    """
    text = f"Metrics are not available: objective metric {metric_name!r} was not reported"
    text += f" ({detail})." if detail else "."
    if not last_lines:
        return text + "\nThe trial wrote no output."
    quoted = "\n".join(f"    {line}" for line in last_lines)
    return f"{text}\nLast {len(last_lines)} lines of output:\n{quoted}"


def source_hint(parser: Parser) -> str:
    """How the parser expects the objective to be reported, for messages."""
    name = parser.metric_names[0]
    if parser.format is MetricsFormat.JSON:
        return f'JSON lines like {{"{name}": 0.25}}'
    filters = getattr(parser, "filters", (DEFAULT_FILTER,))
    if tuple(filters) == (DEFAULT_FILTER,):
        return f"lines like '{name}=0.25'"
    return f"lines matching metricsFormat {list(filters)!r}"


class TrialCollector:
    """Collects one trial's observations from one source into a store (thread-safe).

    Args:
        store: a :class:`tunery.store.Store`, or any :class:`ObservationSink`.
        trial_name: the trial whose rows these are.
        objective: the experiment's objective (metric names and strategies).
        parser: a fresh parser (:func:`metrics_collector.parsers.make_parser`).
        stop_check: early-stopping verdict over the ``stop_metrics`` observations so far.
        on_stop: called once with the verdict when ``stop_check`` says stop.
        stop_metrics: which metrics ``stop_check`` sees (default: the objective's).
        flush_interval: the longest a parsed observation waits before being written.
        batch_size: rows per insert; a full batch is written at once.
        tail_lines: how many output lines ``last_lines`` keeps.
        hint: how the objective is expected to be reported, for the MetricsUnavailable
            message (default: from the parser), for a source fed through :meth:`add`: the
            message then says the source never held the objective, not "no output line".
        background_flush: write queued rows from a thread of the collector's own; False: the
            owner calls :meth:`flush` (one thread flushing many collectors).
    """

    def __init__(
        self,
        store: ObservationSink,
        trial_name: str,
        objective: Objective,
        parser: Parser,
        *,
        stop_check: StopCheck | None = None,
        on_stop: Callable[[StopDecision], object] | None = None,
        stop_metrics: Collection[str] | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        tail_lines: int = DEFAULT_LINES,
        hint: str | None = None,
        background_flush: bool = True,
    ) -> None:
        if flush_interval <= 0 or batch_size < 1:
            raise ValueError(
                f"flush_interval must be > 0 and batch_size >= 1, got {flush_interval}, "
                f"{batch_size}"
            )
        self.store = store
        self.trial_name = trial_name
        self.objective = objective
        self.parser = parser
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._stop_check = stop_check
        self._on_stop = on_stop
        self._stop_metrics = frozenset(stop_metrics or (objective.metric_name,))
        self._keeps_steps = bool(getattr(store, "keeps_steps", True))
        self._tail = OutputTail(tail_lines)
        self._hint = hint

        self._feed_lock = threading.Lock()  # parser, tail, stop state; taken first
        self._write_lock = threading.Lock()  # one writer at a time; taken second
        self._cond = threading.Condition()  # pending queue; taken last
        self._pending: list[Observation] = []
        self._skip: collections.Counter[tuple[Any, ...]] = collections.Counter()
        self._skip_until: int | None = None
        self._fed_bytes = 0
        self._fed = False
        self._closed = False
        self._closing = False
        self._last_flush = 0.0
        self._written = 0
        self._fatal: BaseException | None = None
        self._stop_observations: list[Observation] = []
        self._stop_decision: StopDecision | None = None
        self._stop_undelivered = False
        self._thread: threading.Thread | None = None
        if background_flush:
            self._thread = threading.Thread(
                target=self._flush_loop, name=f"collector-{trial_name}", daemon=True
            )
            self._thread.start()

    # -- input -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> int:
        """Parse a chunk of output; returns how many new observations were queued.

        Raises:
            CollectorError: the collector is closed.
        """
        with self._feed_lock:
            if self._closed:
                raise CollectorError(f"collector of trial {self.trial_name} is closed")
            self._fed = True
            queued = 0
            until = self._skip_until
            if until is not None and self._fed_bytes < until < self._fed_bytes + len(chunk):
                head = until - self._fed_bytes  # the rest of what existed at resume()
                queued += self._take(chunk[:head])
                chunk = chunk[head:]
            if chunk and self._skip_until is not None and self._fed_bytes >= self._skip_until:
                self._skip.clear()  # output written after resume(): all new
                self._skip_until = None
            queued += self._take(chunk)
        self._deliver_stop()
        return queued

    def _take(self, chunk: bytes) -> int:
        self._fed_bytes += len(chunk)
        self._tail.feed(chunk)
        return self._accept(self.parser.feed(chunk))

    def add(self, observations: list[Observation]) -> int:
        """Queue observations a source read itself (event files, a scrape), as if parsed.

        Returns how many were queued (rows the store already holds after :meth:`resume` are
        skipped).

        Raises:
            CollectorError: the collector is closed.
        """
        with self._feed_lock:
            if self._closed:
                raise CollectorError(f"collector of trial {self.trial_name} is closed")
            self._fed = True
            queued = self._accept(list(observations))
        self._deliver_stop()
        return queued

    def end_of_input(self) -> int:
        """The source ended: parse its last line even without a line terminator."""
        with self._feed_lock:
            self._fed = True
            queued = self._accept(self.parser.flush())
        self._deliver_stop()
        return queued

    def resume(self, source_bytes: int | None = None) -> int:
        """Before feeding a source from its start again: skip what the store already has.

        ``source_bytes`` is how much of the source exists now (a log file's size): rows
        stored before a crash can only come from those bytes, so matching stops once they
        have been re-read, and later output is never taken for a stored row (which another
        source, e.g. pushed metrics, could have written with the same metric, step and
        value). Without it, matching goes on while stored rows remain unmatched.

        Returns the number of stored rows found for this trial's metrics.

        Raises:
            StoreUnavailableError: the store cannot be read (retryable).
        """
        with self._feed_lock:
            if self._fed:
                raise CollectorError("resume() must come before the first feed()")
            stored = self.store.get_observations(self.trial_name)
            wanted = set(self.parser.metric_names)
            self._skip = collections.Counter(
                self._key(o) for o in stored if o.metric_name in wanted
            )
            self._skip_until = source_bytes
            if source_bytes is not None and source_bytes <= 0:
                self._skip.clear()
            return sum(self._skip.values())

    def replay(self, log_path: str | os.PathLike[str]) -> int:
        """After a crash: re-parse the trial's log file, add exactly what the store lacks.

        Idempotent. Returns the number of observations added.

        Raises:
            StoreUnavailableError: the store cannot be read (retryable; nothing was added).
            FlushError: the missing rows could not be written (retryable).
        """
        path = Path(log_path)
        self.resume(path.stat().st_size if path.exists() else 0)
        before = self._written
        if path.exists():
            with path.open("rb") as f:
                while chunk := f.read(REPLAY_CHUNK):
                    self.feed(chunk)
        self.end_of_input()
        try:
            self.flush()
        except StoreUnavailableError as e:
            raise FlushError(
                f"replay of {path} found {self.pending} missing observation(s) of trial "
                f"{self.trial_name} but could not write them: {e}",
                pending=self.pending,
            ) from e
        return self._written - before

    # -- output ----------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every queued observation now; returns how many were written.

        Raises:
            StoreUnavailableError: the store is down; the rows stay queued.
        """
        with self._write_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            written = 0
            try:
                for i in range(0, len(batch), self.batch_size):
                    part = batch[i : i + self.batch_size]
                    self.store.add_observations(self.trial_name, part)
                    written += len(part)
            except BaseException:
                with self._cond:
                    self._pending[:0] = batch[written:]
                raise
            finally:
                self._written += written
                self._last_flush = time.monotonic()
            return written

    def close(self, timeout: float = 30.0) -> None:
        """Parse the last partial line, stop the flush thread and write everything.

        Retries a store outage until ``timeout``. Calling it again does nothing.

        Raises:
            FlushError: rows could not be written; the log file still holds them.
        """
        with self._feed_lock:
            if self._closed:
                return
            self._accept(self.parser.flush())
            self._closed = True
        self._deliver_stop()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                self.flush()
                return
            except StoreUnavailableError as e:
                if time.monotonic() + delay > deadline:
                    raise self._flush_error(e) from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception as e:
                raise self._flush_error(e) from e

    def summarize(self) -> CollectionSummary:
        """Katib's per-metric summary from every stored row of the trial.

        Raises:
            StoreUnavailableError: the store cannot be read (retryable).
        """
        observations = self.store.get_observations(self.trial_name)
        metrics = summarize_metrics(observations, self.objective.metric_names)
        name = self.objective.metric_name
        return CollectionSummary(
            trial_name=self.trial_name,
            objective=self.objective,
            metrics=metrics,
            objective_value=metrics[name].select_numeric(self.objective.strategy(name)),
            stats=self.parser.stats,
            written=self._written,
            stop_decision=self._stop_decision,
            last_lines=tuple(self.last_lines()),
            source_hint=source_hint(self.parser) if self._hint is None else self._hint,
            **({} if self._hint is None else {"missing": "nothing was found"}),
        )

    def finish(self, timeout: float = 30.0) -> CollectionSummary:
        """``close()`` then ``summarize()``: what the controller calls when the trial ends."""
        self.close(timeout)
        return self.summarize()

    def __enter__(self) -> TrialCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------
    @property
    def stats(self) -> ParseStats:
        with self._feed_lock:
            return self.parser.stats

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def flush_due(self) -> bool:
        """Whether queued rows have waited ``flush_interval`` or fill a batch (for an owner
        that flushes, ``background_flush=False``)."""
        with self._cond:
            if not self._pending:
                return False
            return (
                len(self._pending) >= self.batch_size
                or time.monotonic() - self._last_flush >= self.flush_interval
            )

    @property
    def written(self) -> int:
        return self._written

    @property
    def stop_decision(self) -> StopDecision | None:
        """The early-stopping verdict that fired, if any."""
        return self._stop_decision

    def last_lines(self) -> list[str]:
        with self._feed_lock:
            return self._tail.lines()

    # -- internals -------------------------------------------------------------------------
    def _key(self, obs: Observation) -> tuple[Any, ...]:
        if self._keeps_steps:
            return (obs.metric_name, obs.step, obs.value)
        return (obs.metric_name, obs.value)

    def _accept(self, observations: list[Observation]) -> int:
        """Queue new observations and run the stop check; called under the feed lock.

        A line without its own timestamp (Katib stores the zero time, year 1) gets the time it
        was read: the output is collected as it is written."""
        if not observations:
            return 0
        if any(o.time == ZERO_TIME for o in observations):
            now = dt.datetime.now(dt.UTC)
            observations = [
                dataclasses.replace(o, time=now) if o.time == ZERO_TIME else o
                for o in observations
            ]
        new: Iterable[Observation] = observations
        if self._skip:
            new = [o for o in observations if not self._already_stored(o)]
        queued = 0
        with self._cond:
            before = len(self._pending)
            self._pending.extend(new)
            queued = len(self._pending) - before
            if queued:
                self._cond.notify()
        if self._stop_check is not None and self._stop_decision is None:
            relevant = [o for o in observations if o.metric_name in self._stop_metrics]
            if relevant:
                self._stop_observations.extend(relevant)
                self._run_stop_check()
        return queued

    def _already_stored(self, obs: Observation) -> bool:
        key = self._key(obs)
        count = self._skip.get(key, 0)
        if not count:
            return False
        if count == 1:
            del self._skip[key]
        else:
            self._skip[key] = count - 1
        return True

    def _run_stop_check(self) -> None:
        assert self._stop_check is not None
        try:
            decision = self._stop_check(tuple(self._stop_observations))
        except Exception:
            log.exception("trial %s: early-stopping check failed; collecting on", self.trial_name)
            return
        if decision.stop:
            with self._cond:
                self._stop_decision = decision
                self._stop_undelivered = True

    def _deliver_stop(self) -> None:
        """Flush, then call ``on_stop`` once; outside the feed lock, so it may call back."""
        with self._cond:
            if not self._stop_undelivered:
                return
            self._stop_undelivered = False
            decision = self._stop_decision
        assert decision is not None
        log.info(
            "trial %s: early stop (%s) %s", self.trial_name, decision.reason, decision.message
        )
        try:
            self.flush()  # what was collected is stored before the process is stopped
        except Exception as e:
            log.warning("trial %s: flush before early stop failed (%s)", self.trial_name, e)
        if self._on_stop is not None:
            try:
                self._on_stop(decision)
            except Exception:
                log.exception("trial %s: on_stop callback failed", self.trial_name)

    def _flush_loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while True:
                    if self._closing:
                        return  # close() writes the rest itself
                    if not self._pending:
                        self._cond.wait()
                        continue
                    wait = self._last_flush + max(self.flush_interval, backoff) - time.monotonic()
                    if wait <= 0 or (not backoff and len(self._pending) >= self.batch_size):
                        break
                    self._cond.wait(wait)
            try:
                self.flush()
                backoff = 0.0
            except StoreUnavailableError as e:
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning(
                    "trial %s: store unavailable (%s); %d observation(s) wait, retry in %.1fs",
                    self.trial_name,
                    e,
                    self.pending,
                    backoff,
                )
            except Exception as e:
                self._fatal = e
                log.error("trial %s: writing observations failed: %s", self.trial_name, e)
                return

    def _flush_error(self, cause: BaseException) -> FlushError:
        pending = self.pending
        return FlushError(
            f"{pending} observation(s) of trial {self.trial_name} could not be written "
            f"({cause}); the trial's log file holds them: replay it to add them",
            pending=pending,
        )


def collect_file(
    store: ObservationSink,
    trial_name: str,
    objective: Objective,
    parser: Parser,
    log_path: str | os.PathLike[str],
) -> CollectionSummary:
    """Replay a finished trial's log file into the store and summarise it (controller restart)."""
    collector = TrialCollector(store, trial_name, objective, parser)
    try:
        collector.replay(log_path)
    finally:
        collector.close()
    return collector.summarize()
