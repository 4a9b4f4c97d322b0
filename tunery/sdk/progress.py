"""Live progress of a running experiment: a rich table on a terminal, plain lines otherwise.

Used as the reconcile loop's progress callback by ``tunery run``/``resume`` and by the SDK's
``tune`` (both build it with :meth:`ProgressView.of_experiment`). On a terminal it redraws:

- a header with the experiment's condition, ``finished/max`` trials, the count of each
  condition, the elapsed time and an ETA (from the finishing rate so far);
- the best trial so far (never a Failed one) with its parameters;
- the running trials with the metrics they reported so far (read from the store as they
  arrive), then the latest finished trials, and ``... N more`` for the rows left out.

Elsewhere (a pipe, a log file, a notebook) it prints one line per finished trial, each with
``[finished/max]``, the trial's metrics and parameters, and the best so far.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunery.seeding import is_warm_start
from tunery.trials import (
    MetricSummary,
    Objective,
    Observation,
    TrialCondition,
    is_feasible,
    summarize_metrics,
)

_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "MetricsUnavailable": "yellow",
    "EarlyStopped": "cyan",
    "Killed": "magenta",
    "Running": "bold",
    "Created": "dim",
}
_LIVE_METRICS_EVERY = 1.0
"""Seconds between two reads of one running trial's metrics."""

ObservationSource = Callable[[str], Sequence[Observation]]


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` for a number of seconds."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def short_value(text: str) -> str:
    """A parameter or metric value for a table: decimals to 4 significant digits (integers
    and names unchanged; ``-o json`` and the SDK keep full precision)."""
    if "." not in text and "e" not in text.lower():
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.4g}" if math.isfinite(number) else text


_FIND = object()
"""``ProgressView.line``'s default: find the best trial in the trials given."""


class ProgressView:
    """Context manager; call :meth:`update` with each reconcile step's result and trials."""

    def __init__(
        self,
        name: str,
        *,
        objective: Objective | None = None,
        max_trials: int | None = None,
        observations: ObservationSource | None = None,
        enabled: bool = True,
        max_rows: int = 10,
        console: Console | None = None,
    ) -> None:
        self.name = name
        self.objective = objective
        self.max_trials = max_trials
        self.observations = observations
        self.enabled = enabled
        self.max_rows = max_rows
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self._reported: set[str] = set()
        self._warm: set[str] = set()  # warm-start trials: imported, never run, not reported
        self._started = time.monotonic()
        self._last_render = 0.0
        self._live_metrics: dict[str, tuple[float, dict[str, str]]] = {}

    @classmethod
    def of_experiment(
        cls, store: Any, name: str, *, enabled: bool = True, console: Console | None = None
    ) -> ProgressView:
        """The view of a stored experiment: its objective, budget and live metrics."""
        from controller.reconcile import objective_from_spec

        spec = store.get_experiment(name).spec["spec"]
        return cls(
            name,
            objective=objective_from_spec(spec),
            max_trials=spec.get("maxTrialCount"),
            observations=store.get_observations,
            enabled=enabled,
            console=console,
        )

    def __enter__(self) -> ProgressView:
        self._started = time.monotonic()
        if self.enabled and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    @property
    def _stream(self) -> TextIO:
        return self.console.file if self.console.file is not None else sys.stderr

    def update(self, result: Any, trials: Sequence[Any]) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            now = time.monotonic()
            if now - self._last_render >= 0.2 or result.done:
                self._last_render = now
                self.live.update(self.render(result, trials))
            return
        # plain mode: one line per finished trial; a step's result says what changed, what
        # counts and which is best, so a long experiment is not scanned at every step
        counts = getattr(result, "counts", None)
        changed = trials if counts is None else result.changed
        self._warm.update(t.name for t in changed if is_warm_start(t))
        new = [
            t
            for t in changed
            if t.condition.is_terminal
            and t.name not in self._reported
            and t.name not in self._warm
        ]
        if not new:
            return
        finished = (
            sum(t.condition.is_terminal for t in trials) if counts is None else counts.completed
        ) - len(self._warm)  # warm-start trials were not run: the budget counts the others
        best = self._best(trials) if counts is None else result.best
        for trial in new:
            self._reported.add(trial.name)
            print(self.line(trial, trials, finished, best), file=self._stream, flush=True)

    # -- pieces --------------------------------------------------------------------------------

    def _summaries(self, trial: Any) -> list[MetricSummary]:
        return [
            MetricSummary(m["name"], m["min"], m["max"], m["latest"])
            for m in (trial.observation or {}).get("metrics", [])
        ]

    def _metrics(self, trial: Any) -> dict[str, str]:
        """Each metric as the experiment's metric strategy selects it (Katib's default: the
        objective's direction, so ``min`` of every metric when minimising), the value the best
        trial is chosen by and ``tunery best`` shows; ``latest`` without an objective. A
        running trial shows what it reported so far."""
        summaries = self._summaries(trial)
        if not summaries and trial.condition is TrialCondition.RUNNING:
            return self._running_metrics(trial.name)
        shown = {}
        for summary in summaries:
            value = summary.latest
            if self.objective is not None:
                value = summary.select(self.objective.strategy(summary.name))
            shown[summary.name] = value
        return shown

    def _running_metrics(self, trial_name: str) -> dict[str, str]:
        """The latest value of each metric a running trial reported, read at most once a
        second per trial."""
        if self.observations is None or self.objective is None:
            return {}
        now = time.monotonic()
        cached = self._live_metrics.get(trial_name)
        if cached is not None and now - cached[0] < _LIVE_METRICS_EVERY:
            return cached[1]
        try:
            found = self.observations(trial_name)
        except Exception:  # a view must not stop the experiment: show nothing new
            return cached[1] if cached else {}
        summaries = summarize_metrics(found, self.objective.metric_names)
        shown = {n: s.latest for n, s in summaries.items() if s.latest != "unavailable"}
        self._live_metrics[trial_name] = (now, shown)
        return shown

    def _best(self, trials: Sequence[Any]) -> tuple[Any, float] | None:
        """The best trial by the objective's metric strategy (never a Failed or infeasible one),
        or None."""
        objective = self.objective
        if objective is None:
            return None
        best: tuple[Any, float] | None = None
        for trial in trials:
            if trial.condition is TrialCondition.FAILED:
                continue
            selected = {
                summary.name: summary.select_numeric(objective.strategy(summary.name))
                for summary in self._summaries(trial)
            }
            if not is_feasible(selected.get(c) for c in objective.constraints):
                continue  # a trial breaking a constraint is never the best
            value = selected.get(objective.metric_name)
            if value is not None and objective.is_better(value, best and best[1]):
                best = (trial, value)
        return best

    def _params(self, trial: Any) -> str:
        return " ".join(f"{k}={short_value(str(v))}" for k, v in trial.assignment.items())

    def _best_text(self, best: tuple[Any, float] | None) -> str:
        if best is None or self.objective is None:
            return ""
        trial, value = best
        return f"best {self.objective.metric_name}={value:.4g} ({trial.name})"

    def _count(self, finished: int) -> str:
        return f"{finished}/{self.max_trials}" if self.max_trials else str(finished)

    def _eta(self, finished: int, elapsed: float) -> str:
        if not self.max_trials or finished == 0 or finished >= self.max_trials:
            return ""
        rate = finished / max(elapsed, 1e-9)
        return f"ETA {duration((self.max_trials - finished) / rate)}"

    def line(
        self,
        trial: Any,
        trials: Sequence[Any],
        finished: int,
        best: tuple[Any, float] | object | None = _FIND,
    ) -> str:
        """The plain line of a finished trial; ``best`` as :meth:`_best` finds it in
        ``trials``."""
        metrics = " ".join(f"{k}={short_value(v)}" for k, v in self._metrics(trial).items())
        text = (
            f"[{self._count(finished)}] {trial.name} {trial.condition.value}: {metrics} "
            f"[{self._params(trial)}]"
        )
        if trial.condition is not TrialCondition.SUCCEEDED:
            first = trial.message.splitlines()[0] if trial.message else ""
            text += f" ({trial.reason}: {first})"
        best_text = self._best_text(self._best(trials) if best is _FIND else best)  # type: ignore[arg-type]
        elapsed = duration(time.monotonic() - self._started)
        return f"{text}  | {best_text + ', ' if best_text else ''}elapsed {elapsed}"

    def render(self, result: Any, trials: Sequence[Any]) -> Group:
        """The terminal view of one step."""
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.condition.value] = counts.get(t.condition.value, 0) + 1
        finished = sum(t.condition.is_terminal and not is_warm_start(t) for t in trials)
        elapsed = time.monotonic() - self._started
        eta = self._eta(finished, elapsed)
        header = Text.assemble(
            (f"{self.name}", "bold"),
            f"  {result.condition} ({result.reason})  ",
            (f"{self._count(finished)} trials finished  ", "bold"),
            *[(f"{k} {v}  ", _STYLES.get(k, "")) for k, v in sorted(counts.items())],
            f"elapsed {duration(elapsed)}",
            f"  {eta}" if eta else "",
        )
        lines: list[Any] = [header]
        best = self._best(trials)
        if best is not None and self.objective is not None:
            trial, value = best
            lines.append(
                Text.assemble(
                    "best so far: ",
                    (f"{self.objective.metric_name}={value:.4g}", "bold green"),
                    f"  {trial.name}  {self._params(trial)}",
                )
            )
        table = Table(box=None, show_header=True, header_style="bold", expand=False)
        table.add_column("trial")
        table.add_column("status")
        table.add_column("metrics")
        table.add_column("parameters", overflow="fold")
        running = [t for t in trials if t.condition is TrialCondition.RUNNING]
        done = [t for t in trials if t.condition.is_terminal]
        room = max(0, self.max_rows - len(running))
        shown = [*running[: self.max_rows], *(done[-room:] if room else [])]
        for t in shown:
            metrics = self._metrics(t)
            table.add_row(
                t.name,
                Text(t.condition.value, style=_STYLES.get(t.condition.value, "")),
                " ".join(f"{k}={short_value(v)}" for k, v in metrics.items()),
                self._params(t),
            )
        lines.append(table)
        notes = []
        hidden = len(running) + len(done) - len(shown)
        if hidden:
            notes.append(f"... {hidden} more trial{'s' if hidden != 1 else ''} not shown")
        pending = sum(t.condition is TrialCondition.CREATED for t in trials)
        if pending:
            notes.append(f"{pending} pending")
        if notes:
            lines.append(Text("  ".join(notes), "dim"))
        return Group(*lines)
