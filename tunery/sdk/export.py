"""Trials as a table: rows of plain values, a pandas DataFrame, and the HTML that Jupyter shows
for a :class:`~tunery.sdk.records.TuneResult`.

Part of the SDK; called by ``TuneResult.to_dataframe``/``_repr_html_`` and
``Client.trials_dataframe``. pandas is optional (``pip install 'tunery[pandas]'``) and imported
only when a DataFrame is asked for.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunery.sdk.errors import MissingDependencyError

if TYPE_CHECKING:
    from tunery.sdk.records import TrialInfo, TuneResult

PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."
_HTML_ROWS = 50


def trial_rows(trials: Sequence[TrialInfo]) -> list[dict[str, Any]]:
    """One dict per trial: ``trial``, ``condition``, ``reason``, ``value`` (the objective),
    ``params.<name>`` (typed), ``metrics.<name>`` (each by its metric strategy),
    ``start_time``, ``completion_time`` and ``duration`` (seconds, or None)."""
    params = _names(t.parameters for t in trials)
    metrics = _names(t.metrics for t in trials)
    rows = []
    for t in trials:
        seconds = (
            (t.completion_time - t.start_time).total_seconds()
            if t.start_time is not None and t.completion_time is not None
            else None
        )
        rows.append(
            {
                "trial": t.name,
                "condition": t.condition.value,
                "reason": t.reason,
                "value": t.value,
                **{PARAM_PREFIX + p: t.parameters.get(p) for p in params},
                **{METRIC_PREFIX + m: t.metrics.get(m) for m in metrics},
                "start_time": t.start_time,
                "completion_time": t.completion_time,
                "duration": seconds,
            }
        )
    return rows


def to_dataframe(trials: Sequence[TrialInfo]) -> Any:
    """A pandas DataFrame of :func:`trial_rows` (columns in that order, one row per trial).

    Raises:
        MissingDependencyError: pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError:
        raise MissingDependencyError(
            "a DataFrame needs pandas: pip install 'tunery[pandas]'"
        ) from None
    rows = trial_rows(trials)
    columns = list(rows[0]) if rows else ["trial", "condition", "reason", "value"]
    return pd.DataFrame(rows, columns=columns)


def result_html(result: TuneResult) -> str:
    """The HTML table Jupyter shows for a result: how it ended, the best trial, the trials."""
    esc = html.escape
    best = (
        f"best trial <b>{esc(result.best_trial)}</b>: value <b>{_short(result.best_value)}</b> "
        f"with {esc(_pairs(result.best_parameters))}"
        if result.best_trial
        else "<b>no successful trial</b>"
    )
    head = (
        f"<p><b>{esc(result.experiment_name)}</b>: {esc(result.condition or 'unknown')}"
        f"{' (' + esc(result.reason) + ')' if result.reason else ''}, "
        f"{len(result.trials)} trials; {best}</p>"
    )
    rows = trial_rows(result.trials[-_HTML_ROWS:])
    columns = [c for c in (rows[0] if rows else {}) if c not in ("start_time", "completion_time")]
    table = ["<table>", "<thead><tr>"]
    table += [f"<th>{esc(c)}</th>" for c in columns]
    table.append("</tr></thead><tbody>")
    for row in rows:
        style = ' style="font-weight:bold"' if row["trial"] == result.best_trial else ""
        table.append(f"<tr{style}>")
        table += [f"<td>{esc(_short(row[c]))}</td>" for c in columns]
        table.append("</tr>")
    table.append("</tbody></table>")
    hidden = len(result.trials) - len(rows)
    note = f"<p>... {hidden} earlier trials not shown (result.trials has all)</p>" * (hidden > 0)
    return head + note + "".join(table)


def _names(mappings: Any) -> list[str]:
    seen: dict[str, None] = {}
    for mapping in mappings:
        for name in mapping:
            seen.setdefault(name, None)
    return list(seen)


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())
