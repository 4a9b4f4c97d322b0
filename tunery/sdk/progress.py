"""Live progress of a running experiment: a rich table on a terminal, plain lines otherwise.

Used by ``tunery run``/``resume`` (and the SDK's ``tune``) as the reconcile loop's progress
callback. Shows the trial counts, the running trials with their parameters, and the best
trial so far; when output is not a terminal it prints one line per finished trial instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunery.trials import MetricSummary, Objective

_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "MetricsUnavailable": "yellow",
    "EarlyStopped": "cyan",
    "Killed": "magenta",
    "Running": "bold",
    "Created": "dim",
}


class ProgressView:
    """Context manager; call :meth:`update` with each reconcile step's result and trials."""

    def __init__(
        self,
        name: str,
        *,
        objective: Objective | None = None,
        enabled: bool = True,
        max_rows: int = 10,
    ) -> None:
        self.name = name
        self.objective = objective
        self.enabled = enabled
        self.max_rows = max_rows
        self.console = Console(stderr=True)
        self.live: Live | None = None
        self._reported: set[str] = set()
        self._started = time.monotonic()
        self._last_render = 0.0

    def __enter__(self) -> ProgressView:
        if self.enabled and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def update(self, result: Any, trials: Sequence[Any]) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            now = time.monotonic()
            if now - self._last_render >= 0.2 or result.done:
                self._last_render = now
                self.live.update(self._render(result, trials))
            return
        for trial in trials:  # plain mode: one line per finished trial
            if trial.condition.is_terminal and trial.name not in self._reported:
                self._reported.add(trial.name)
                print(self._line(trial), file=sys.stderr, flush=True)

    def _metrics(self, trial: Any) -> str:
        """Each metric as the experiment's metric strategy selects it (Katib's default: the
        objective's direction, so ``min`` of every metric when minimising), the value the best
        trial is chosen by and ``tunery best`` shows; ``latest`` without an objective."""
        shown = []
        for m in (trial.observation or {}).get("metrics", []):
            value = m["latest"]
            if self.objective is not None:
                summary = MetricSummary(m["name"], m["min"], m["max"], m["latest"])
                value = summary.select(self.objective.strategy(m["name"]))
            shown.append(f"{m['name']}={value}")
        return " ".join(shown)

    def _line(self, trial: Any) -> str:
        params = " ".join(f"{k}={v}" for k, v in trial.assignment.items())
        text = f"{trial.name} {trial.condition.value}: {self._metrics(trial)} [{params}]"
        if trial.condition.value not in ("Succeeded",):
            text += f" ({trial.reason}: {trial.message.splitlines()[0] if trial.message else ''})"
        return text

    def _render(self, result: Any, trials: Sequence[Any]) -> Group:
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.condition.value] = counts.get(t.condition.value, 0) + 1
        elapsed = time.monotonic() - self._started
        header = Text.assemble(
            (f"{self.name}", "bold"),
            f"  {result.condition} ({result.reason})  ",
            f"{len(trials)} trials  ",
            *[(f"{k} {v}  ", _STYLES.get(k, "")) for k, v in sorted(counts.items())],
            f"{elapsed:.0f}s",
        )
        best = self._best(trials)
        lines: list[Any] = [header]
        if best is not None:
            trial, value = best
            params = " ".join(f"{k}={v}" for k, v in trial.assignment.items())
            lines.append(
                Text.assemble(
                    "best so far: ",
                    (f"{self.objective.metric_name}={value:.6g}", "bold green"),
                    f"  {trial.name}  {params}",
                )
            )
        table = Table(box=None, show_header=True, header_style="bold", expand=False)
        table.add_column("trial")
        table.add_column("status")
        table.add_column("metrics")
        table.add_column("parameters", overflow="fold")
        running = [t for t in trials if t.condition.value == "Running"]
        recent = [t for t in trials if t.condition.is_terminal][
            -max(0, self.max_rows - len(running)) :
        ]
        for t in [*running, *recent][-self.max_rows :]:
            table.add_row(
                t.name,
                Text(t.condition.value, style=_STYLES.get(t.condition.value, "")),
                self._metrics(t),
                " ".join(f"{k}={v}" for k, v in t.assignment.items()),
            )
        return Group(*lines, table)

    def _best(self, trials: Sequence[Any]) -> tuple[Any, float] | None:
        """The best trial by the objective's metric strategy, or None."""
        objective = self.objective
        if objective is None:
            return None
        best: tuple[Any, float] | None = None
        for trial in trials:
            for m in (trial.observation or {}).get("metrics", []):
                if m["name"] != objective.metric_name:
                    continue
                summary = MetricSummary(m["name"], m["min"], m["max"], m["latest"])
                value = summary.select_numeric(objective.strategy(m["name"]))
                if value is not None and objective.is_better(value, best and best[1]):
                    best = (trial, value)
        return best
