"""The data behind every plot and table: one experiment's snapshot and what is derived from it.

Shared by :mod:`tunery.visualization` (plotly figures for Python and Jupyter) and the
dashboard's JSON API (:mod:`tunery.dashboard`), so a plot in a notebook and the same plot in
the browser show the same numbers. Reads the store only through the :class:`Store` API.

Costs, for T trials: :func:`load_snapshot` reads the experiment and its trials (no
observation); every derived series is O(T) or O(T log T) on column arrays and memoised on the
snapshot. Observation logs are read only for the intermediate-values plot, for a bounded
sample of trials (:data:`INTERMEDIATE_TRIALS`), never for the whole experiment.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from controller import status as experiment_status
from controller.reconcile import objective_from_spec
from tunery.pareto import nondominated_mask
from tunery.store.base import ExperimentRecord, Store, TrialRecord
from tunery.trials import MetricSummary, Objective, ObjectiveType, TrialCondition, is_feasible

INTERMEDIATE_TRIALS = 60
"""Most trials whose observation logs the intermediate-values plot reads."""

THRESHOLD_TRIALS = 200
"""Most completed trials the drawn median-stop threshold is computed from."""

PARALLEL_TRIALS = 2000
"""Most lines the parallel-coordinates plot draws (WebGL in software takes ~1 s per 3,000)."""

IMPORTANCE_ROWS = 2000
"""Most trials the importance model is fitted on (a fixed-seed sample beyond that)."""

CONTOUR_GRID = 60
"""Grid points per axis of the interpolated contour."""

CONTOUR_POINTS = 3000
"""Most trials the contour is interpolated from (a fixed-seed sample beyond that)."""

T = TypeVar("T")


class DataError(ValueError):
    """A request for data the experiment cannot give (unknown parameter, bad column...)."""


@dataclass(frozen=True)
class ParameterInfo:
    """One search-space parameter as the plots need it."""

    name: str
    type: str  # double, int, discrete, categorical
    log: bool = False
    choices: tuple[str, ...] = ()  # categorical values, in spec order

    @property
    def categorical(self) -> bool:
        return self.type == "categorical"

    def encode(self, text: str | None) -> float:
        """The wire value as a number (categorical: its index); NaN when absent or unparsable."""
        if text is None:
            return math.nan
        if self.categorical:
            try:
                return float(self.choices.index(text))
            except ValueError:
                return math.nan
        try:
            return float(text)
        except ValueError:
            return math.nan


def parameters_of(spec: Mapping[str, Any]) -> tuple[ParameterInfo, ...]:
    """The parameters of a (defaulted) Experiment document's ``spec``."""
    found = []
    for p in spec.get("parameters") or ():
        space = p.get("feasibleSpace") or {}
        kind = p.get("parameterType", "double")
        found.append(
            ParameterInfo(
                name=p["name"],
                type=kind,
                log=str(space.get("distribution", "")).startswith("log"),
                choices=tuple(space.get("list") or ()) if kind == "categorical" else (),
            )
        )
    return tuple(found)


def _selected(trial: TrialRecord, objective: Objective) -> dict[str, float | None]:
    """Every metric's value as its strategy selects it (None when unavailable)."""
    out: dict[str, float | None] = {}
    for metric in (trial.observation or {}).get("metrics", []):
        summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
        out[metric["name"]] = summary.select_numeric(objective.strategy(metric["name"]))
    return out


def _seconds(value: dt.datetime | None) -> float:
    return value.timestamp() if value is not None else math.nan


class Snapshot:
    """One read of an experiment and its trials, with column arrays and memoised series.

    Immutable after construction; derived values are computed once, under a lock, so the
    dashboard's threads share them.
    """

    def __init__(
        self,
        record: ExperimentRecord,
        trials: Sequence[TrialRecord],
        now: dt.datetime | None = None,
    ) -> None:
        self.record = record
        self.trials = tuple(trials)
        self.now = now or dt.datetime.now(dt.UTC)
        spec = record.spec.get("spec", {})
        self.spec = spec
        self.objective = objective_from_spec(spec)
        self.parameters = parameters_of(spec)
        self.metric_names = self.objective.metric_names
        self.index = {t.name: i for i, t in enumerate(self.trials)}
        self.conditions = [t.condition.value for t in self.trials]
        self.metrics = [_selected(t, self.objective) for t in self.trials]
        self.values = np.array(
            [
                math.nan if (v := m.get(self.objective.metric_name)) is None else v
                for m in self.metrics
            ],
            dtype=float,
        )
        self.columns = {
            p.name: np.array([p.encode(t.assignment.get(p.name)) for t in self.trials], float)
            for p in self.parameters
        }
        self.start = np.array([_seconds(t.start_time) for t in self.trials], float)
        self.end = np.array([_seconds(t.completion_time) for t in self.trials], float)
        self._memo: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._computing: dict[Any, threading.Lock] = {}

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def minimize(self) -> bool:
        return self.objective.type is ObjectiveType.MINIMIZE

    @property
    def completed(self) -> bool:
        return experiment_status.is_completed(self.record.status)

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per snapshot and key: a caller asking for a key another thread is
        computing waits for that result (the dashboard's warm-up thread and a page's requests
        ask for the same plots at once). ``compute`` may ask for other keys, never its own."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[no-any-return]
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:
            with self._lock:
                if key in self._memo:
                    return self._memo[key]  # type: ignore[no-any-return]
            value = compute()
            with self._lock:
                self._computing.pop(key, None)
                return self._memo.setdefault(key, value)  # type: ignore[no-any-return]

    def inherit(self, previous: Snapshot) -> None:
        """Reuse ``previous``'s parameter importance while the trials with a value grew by
        under 5 % (over 100 of them): refitting the forest on every poll of a big running
        experiment would cost a core."""
        before = int(np.count_nonzero(~np.isnan(previous.values)))
        now = int(np.count_nonzero(~np.isnan(self.values)))
        with previous._lock:
            found = previous._memo.get("importance")
        if found is not None and before >= 100 and before <= now <= before * 1.05:
            with self._lock:
                self._memo.setdefault("importance", found)

    def parameter(self, name: str) -> ParameterInfo:
        for p in self.parameters:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.parameters) or "none"
        raise DataError(f"unknown parameter {name!r} (parameters: {known})")


def load_snapshot(store: Store, name: str) -> Snapshot:
    """Read experiment ``name`` and its trials (NotFoundError when it does not exist)."""
    record = store.get_experiment(name)
    return Snapshot(record, store.list_trials(name))


# -- experiment summaries -----------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def experiment_summary(record: ExperimentRecord, now: dt.datetime | None = None) -> dict[str, Any]:
    """One row of the experiments list, from the record alone (no trial read)."""
    now = now or dt.datetime.now(dt.UTC)
    spec = record.spec.get("spec", {})
    state = record.status
    current = experiment_status.current_condition(state) or {}
    objective = objective_from_spec(spec)
    best = state.get("currentOptimalTrial") or {}
    best_value = None
    for metric in (best.get("observation") or {}).get("metrics", []):
        if metric.get("name") == objective.metric_name:
            summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
            best_value = summary.select_numeric(objective.strategy(objective.metric_name))
    start = _parse_time(state.get("startTime")) or record.created_at
    end = _parse_time(state.get("completionTime"))
    return {
        "name": record.name,
        "condition": current.get("type", "Created"),
        "reason": current.get("reason", ""),
        "message": current.get("message", ""),
        "algorithm": (spec.get("algorithm") or {}).get("algorithmName", ""),
        "earlyStopping": (spec.get("earlyStopping") or {}).get("algorithmName"),
        "objective": objective.metric_name,
        "type": objective.type.value,
        "goal": objective.goal,
        "trials": int(state.get("trials", 0)),
        "maxTrials": spec.get("maxTrialCount"),
        "parallelTrials": spec.get("parallelTrialCount"),
        "succeeded": int(state.get("trialsSucceeded", 0)),
        "running": int(state.get("trialsRunning", 0)),
        "failed": int(state.get("trialsFailed", 0)),
        "earlyStopped": int(state.get("trialsEarlyStopped", 0)),
        "finishedTrials": int(state.get("trials", 0))
        - int(state.get("trialsRunning", 0))
        - int(state.get("trialsPending", 0)),
        "bestTrial": best.get("bestTrialName") or None,
        "bestValue": best_value,
        "bestParameters": {
            a["name"]: a["value"] for a in best.get("parameterAssignments") or () if "name" in a
        },
        "created": _iso(record.created_at),
        "start": _iso(start),
        "completion": _iso(end),
        "durationSeconds": round(((end or now) - start).total_seconds(), 3),
        "completed": experiment_status.is_completed(state),
    }


# -- the trials table ---------------------------------------------------------------------------

FIXED_COLUMNS = (
    "number",
    "name",
    "condition",
    "reason",
    "message",
    "start",
    "completion",
    "durationSeconds",
    "gpus",
)


def trial_row(snapshot: Snapshot, i: int) -> dict[str, Any]:
    """Trial ``i`` as a flat row: fixed columns, ``params.<name>``, ``metrics.<name>``."""
    trial = snapshot.trials[i]
    start, end = snapshot.start[i], snapshot.end[i]
    duration = None
    if not math.isnan(start):
        stop = end if not math.isnan(end) else snapshot.now.timestamp()
        duration = round(float(stop - start), 3)
    row: dict[str, Any] = {
        "number": i,
        "name": trial.name,
        "condition": trial.condition.value,
        "reason": trial.reason,
        "message": trial.message,
        "start": _iso(trial.start_time),
        "completion": _iso(trial.completion_time),
        "durationSeconds": duration,
        "gpus": ",".join(str(g) for g in trial.runner_handle.get("gpus") or ()),
    }
    for p in snapshot.parameters:
        row[f"params.{p.name}"] = trial.assignment.get(p.name)
    metrics = snapshot.metrics[i]
    for name in snapshot.metric_names:
        row[f"metrics.{name}"] = metrics.get(name)
    return row


def trial_columns(snapshot: Snapshot) -> list[str]:
    return [
        *FIXED_COLUMNS,
        *(f"params.{p.name}" for p in snapshot.parameters),
        *(f"metrics.{m}" for m in snapshot.metric_names),
    ]


def _sort_key(snapshot: Snapshot, column: str) -> Callable[[int], Any]:
    """A key that sorts numbers as numbers and puts absent values last."""
    if column.startswith("params."):
        name = column.removeprefix("params.")
        p = snapshot.parameter(name)
        if not p.categorical:
            values = snapshot.columns[name]
            return lambda i: (math.isnan(values[i]), 0.0 if math.isnan(values[i]) else values[i])
        return lambda i: (
            snapshot.trials[i].assignment.get(name) is None,
            snapshot.trials[i].assignment.get(name) or "",
        )
    if column.startswith("metrics."):
        name = column.removeprefix("metrics.")
        if name not in snapshot.metric_names:
            raise DataError(f"unknown metric {name!r} in sort column {column!r}")
        return lambda i: (
            snapshot.metrics[i].get(name) is None,
            snapshot.metrics[i].get(name) or 0,
        )
    if column == "number":
        return lambda i: i
    if column == "durationSeconds":
        return lambda i: (
            math.isnan(snapshot.start[i]),
            (snapshot.end[i] if not math.isnan(snapshot.end[i]) else math.inf)
            - (snapshot.start[i] if not math.isnan(snapshot.start[i]) else 0.0),
        )
    if column in ("start", "completion"):
        array = snapshot.start if column == "start" else snapshot.end
        return lambda i: (math.isnan(array[i]), 0.0 if math.isnan(array[i]) else array[i])
    if column in ("name", "condition", "reason", "message"):
        return lambda i: getattr(snapshot.trials[i], column) or ""
    if column == "gpus":
        return lambda i: ",".join(map(str, snapshot.trials[i].runner_handle.get("gpus") or ()))
    raise DataError(
        f"unknown sort column {column!r} (columns: {', '.join(trial_columns(snapshot))})"
    )


def trials_table(
    snapshot: Snapshot,
    *,
    sort: str = "number",
    descending: bool = False,
    condition: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int | None = 100,
) -> dict[str, Any]:
    """A page of the trial table: filtered by condition and a case-insensitive search of the
    name, reason, message and parameter values; sorted by any column (absent values last)."""
    indices: list[int] | None = None  # None: every trial
    if condition:
        wanted = {c.strip() for c in condition.split(",") if c.strip()}
        known = {c.value for c in TrialCondition}
        unknown = sorted(wanted - known)
        if unknown:
            raise DataError(
                f"unknown condition {unknown[0]!r} (conditions: {', '.join(sorted(known))})"
            )
        indices = [i for i, c in enumerate(snapshot.conditions) if c in wanted]
    if search:
        needle = search.lower()
        haystack = _haystacks(snapshot)
        indices = [i for i in (indices or range(len(haystack))) if needle in haystack[i]]
    present, absent = snapshot.memo(("order", sort), lambda: _order(snapshot, sort))
    ordered = (present[::-1] if descending else present) + absent  # absent values stay last
    if indices is not None:
        keep = set(indices)
        ordered = [i for i in ordered if i in keep]
    page = ordered[offset : None if limit is None else offset + limit]
    return {
        "total": len(snapshot.trials),
        "matched": len(ordered),
        "offset": offset,
        "columns": trial_columns(snapshot),
        "rows": [trial_row(snapshot, i) for i in page],
    }


def _order(snapshot: Snapshot, column: str) -> tuple[list[int], list[int]]:
    """Trial indices sorted ascending by ``column``: those with a value, then those without."""
    key = _sort_key(snapshot, column)
    ordered = sorted(range(len(snapshot.trials)), key=key)
    absent = [i for i in ordered if _absent(key(i))]
    if not absent:
        return ordered, []
    gone = set(absent)
    return [i for i in ordered if i not in gone], absent


def _absent(key: Any) -> bool:
    return isinstance(key, tuple) and bool(key[0]) is True


def _haystacks(snapshot: Snapshot) -> list[str]:
    """Per trial, the lower-cased text the table's search looks in."""

    def build() -> list[str]:
        return [
            " ".join(
                [t.name, t.reason, t.message, t.condition.value, *map(str, t.assignment.values())]
            ).lower()
            for t in snapshot.trials
        ]

    return snapshot.memo("haystack", build)


# -- optimization history, EDF ------------------------------------------------------------------


def optimization_history(snapshot: Snapshot) -> dict[str, Any]:
    """Objective value per trial (trials with a value) and the best value so far (over the
    feasible trials when the objective has constraints: ``None`` until one is feasible, and a
    ``feasible`` list says which trials are)."""

    def compute() -> dict[str, Any]:
        values = snapshot.values
        has = ~np.isnan(values)
        numbers = np.flatnonzero(has)
        chosen = values[has]
        constraints = snapshot.objective.constraints
        feasible = [is_feasible(snapshot.metrics[i].get(c) for c in constraints) for i in numbers]
        worst = np.inf if snapshot.minimize else -np.inf
        counted = np.where(feasible, chosen, worst) if constraints else chosen
        best = (
            np.minimum.accumulate(counted) if snapshot.minimize else np.maximum.accumulate(counted)
        )
        extra = {"feasible": feasible} if constraints else {}
        return {
            **extra,
            "objective": snapshot.objective.metric_name,
            "type": snapshot.objective.type.value,
            "goal": snapshot.objective.goal,
            "number": numbers.tolist(),
            "trial": [snapshot.trials[i].name for i in numbers],
            "condition": [snapshot.conditions[i] for i in numbers],
            "value": chosen.tolist(),
            "best": [float(b) if math.isfinite(b) else None for b in best],
        }

    return snapshot.memo("history", compute)


def edf(snapshot: Snapshot) -> dict[str, Any]:
    """Empirical distribution of the objective over the trials with a value."""

    def compute() -> dict[str, Any]:
        values = np.sort(snapshot.values[~np.isnan(snapshot.values)])
        n = len(values)
        return {
            "objective": snapshot.objective.metric_name,
            "value": values.tolist(),
            "fraction": ((np.arange(n) + 1) / n).tolist() if n else [],
        }

    return snapshot.memo("edf", compute)


# -- Pareto front (multi-objective) -------------------------------------------------------------


def pareto_front(snapshot: Snapshot, x: str | None = None, y: str | None = None) -> dict[str, Any]:
    """Every trial with all objective values, flagged when on the Pareto front (by all the
    objectives; Failed trials excluded), for a scatter of objective ``x`` against ``y``
    (default: the first two). ``multi`` is False for a single-objective experiment.

    Raises:
        DataError: ``x`` or ``y`` is not one of the objectives.
    """
    objective = snapshot.objective
    names = objective.objective_metric_names
    for axis in (x, y):
        if axis is not None and axis not in names:
            raise DataError(f"unknown objective {axis!r} (objectives: {', '.join(names)})")
    x = x or names[0]
    y = y or (names[1] if len(names) > 1 else names[0])

    def compute() -> dict[str, Any]:
        rows = [
            i
            for i, m in enumerate(snapshot.metrics)
            if snapshot.conditions[i] != "Failed" and all(m.get(n) is not None for n in names)
        ]
        values = [[snapshot.metrics[i][n] for n in names] for i in rows]
        losses = [objective.losses(v) for v in values]
        mask = nondominated_mask(losses) if rows else np.zeros(0, dtype=bool)
        ix, iy = names.index(x), names.index(y)
        return {
            "multi": objective.is_multi,
            "objectives": [{"name": t.metric_name, "type": t.type.value} for t in objective.terms],
            "x": x,
            "y": y,
            "trial": [snapshot.trials[i].name for i in rows],
            "number": rows,
            "xValue": [v[ix] for v in values],
            "yValue": [v[iy] for v in values],
            "front": [bool(f) for f in mask],
        }

    return snapshot.memo(("pareto", x, y), compute)


# -- parallel coordinates, slice ----------------------------------------------------------------


def _valued(snapshot: Snapshot) -> np.ndarray:
    return np.flatnonzero(~np.isnan(snapshot.values))


def parallel_coordinates(
    snapshot: Snapshot, limit: int | None = PARALLEL_TRIALS
) -> dict[str, Any]:
    """Per parameter the (encoded) values of the trials with an objective value, and those
    values; categorical parameters carry their labels. Beyond ``limit`` trials: the best
    half of ``limit`` and a fixed-seed sample of the others (``trials`` says how many had a
    value)."""

    def compute() -> dict[str, Any]:
        rows = _valued(snapshot)
        total = len(rows)
        if limit is not None and total > limit:
            order = rows[np.argsort(snapshot.values[rows], kind="stable")]
            ranked = order if snapshot.minimize else order[::-1]
            best, rest = ranked[: limit // 2], ranked[limit // 2 :]
            sample = np.random.default_rng(0).choice(rest, limit - len(best), replace=False)
            rows = np.sort(np.concatenate([best, sample]))
        return {**_table(snapshot, rows), "trials": total}

    return snapshot.memo(("parallel", limit), compute)


def slices(snapshot: Snapshot) -> dict[str, Any]:
    """The objective against each parameter, every trial with a value."""
    return snapshot.memo("slices", lambda: _table(snapshot, _valued(snapshot)))


def ranks(snapshot: Snapshot) -> dict[str, Any]:
    """The slice table plus each trial's rank as a fraction: 0 the best objective value,
    1 the worst (ties share the mean rank), as optuna's rank plot colours trials."""

    def compute() -> dict[str, Any]:
        rows = _valued(snapshot)
        table = _table(snapshot, rows)
        values = snapshot.values[rows]
        if len(values):
            from scipy.stats import rankdata

            order = rankdata(values if snapshot.minimize else -values, method="average")
            scale = max(len(values) - 1, 1)
            table["rank"] = ((order - 1) / scale).tolist()
        else:
            table["rank"] = []
        return table

    return snapshot.memo("ranks", compute)


def _table(snapshot: Snapshot, rows: np.ndarray) -> dict[str, Any]:
    return {
        "objective": snapshot.objective.metric_name,
        "number": rows.tolist(),
        "value": snapshot.values[rows].tolist(),
        "parameters": [_dimension(snapshot, p, rows) for p in snapshot.parameters],
    }


def _dimension(snapshot: Snapshot, p: ParameterInfo, rows: np.ndarray) -> dict[str, Any]:
    values = snapshot.columns[p.name][rows]
    return {
        "name": p.name,
        "type": p.type,
        "log": p.log,
        "choices": list(p.choices),
        "values": [None if math.isnan(v) else v for v in values.tolist()],
    }


# -- contour ------------------------------------------------------------------------------------


def contour(snapshot: Snapshot, x: str | None = None, y: str | None = None) -> dict[str, Any]:
    """The objective interpolated (linearly, scipy's ``griddata``) on a grid over two
    parameters, with the trials' points. Defaults: the first two parameters of the spec."""
    if len(snapshot.parameters) < 2:
        raise DataError("a contour plot needs two parameters")
    names = [p.name for p in snapshot.parameters]
    x = x or next(n for n in names if n != y)
    y = y or next(n for n in names if n != x)
    px, py = snapshot.parameter(x), snapshot.parameter(y)
    if px.name == py.name:
        raise DataError(f"x and y are the same parameter {x!r}")
    return snapshot.memo(("contour", x, y), lambda: _contour(snapshot, px, py))


def _contour(snapshot: Snapshot, px: ParameterInfo, py: ParameterInfo) -> dict[str, Any]:
    rows = _valued(snapshot)
    xs, ys = snapshot.columns[px.name][rows], snapshot.columns[py.name][rows]
    ok = ~(np.isnan(xs) | np.isnan(ys))
    rows, xs, ys = rows[ok], xs[ok], ys[ok]
    zs = snapshot.values[rows]
    out: dict[str, Any] = {
        "objective": snapshot.objective.metric_name,
        "x": _axis(px),
        "y": _axis(py),
        "points": {
            "number": rows.tolist(),
            "x": xs.tolist(),
            "y": ys.tolist(),
            "value": zs.tolist(),
        },  # every trial; the grid below may come from a sample
        "grid": None,
    }
    tx, ty = _warp(px, xs), _warp(py, ys)
    if len(tx) > CONTOUR_POINTS:  # interpolate from a fixed-seed sample; draw every point
        keep = np.random.default_rng(0).choice(len(tx), CONTOUR_POINTS, replace=False)
        tx, ty, zs = tx[keep], ty[keep], zs[keep]
    if len(tx) >= 3 and np.ptp(tx) > 0 and np.ptp(ty) > 0:
        from scipy.interpolate import griddata
        from scipy.spatial import QhullError

        gx = np.linspace(tx.min(), tx.max(), CONTOUR_GRID)
        gy = np.linspace(ty.min(), ty.max(), CONTOUR_GRID)
        mesh_x, mesh_y = np.meshgrid(gx, gy)
        try:
            grid = griddata((tx, ty), zs, (mesh_x, mesh_y), method="linear")
        except (QhullError, ValueError):
            grid = None
        if grid is not None:
            out["grid"] = {
                "x": _unwarp(px, gx).tolist(),
                "y": _unwarp(py, gy).tolist(),
                "value": [[None if math.isnan(v) else v for v in row] for row in grid.tolist()],
            }
    return out


def _axis(p: ParameterInfo) -> dict[str, Any]:
    return {"name": p.name, "type": p.type, "log": p.log, "choices": list(p.choices)}


def _warp(p: ParameterInfo, values: np.ndarray) -> np.ndarray:
    return np.log10(values) if p.log and np.all(values > 0) else values


def _unwarp(p: ParameterInfo, values: np.ndarray) -> np.ndarray:
    return np.power(10.0, values) if p.log else values


# -- parameter importance -----------------------------------------------------------------------


ForestFit = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(features, target) -> each feature's importance: :func:`forest_importances`, or the same
run elsewhere (the dashboard's worker process, :mod:`tunery.dashboard.worker`)."""


def forest_importances(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The importance plot's random forest: its impurity-based feature importances."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(
        n_estimators=64, max_depth=12, min_samples_leaf=2, random_state=0, n_jobs=1
    )
    forest.fit(features, target)
    return np.asarray(forest.feature_importances_)


def importance(snapshot: Snapshot, fit: ForestFit = forest_importances) -> dict[str, Any]:
    """Each parameter's share of the objective's variance a random forest explains.

    Method: scikit-learn's ``RandomForestRegressor`` (64 trees, fixed seed) fitted on the
    trials with an objective value (log-scaled parameters on log scale, categorical ones by
    their index), and its impurity-based ``feature_importances_`` (mean decrease in impurity),
    normalised to sum to 1. At most :data:`IMPORTANCE_ROWS` trials (a fixed-seed sample).
    Empty until two trials have values; needs scikit-learn (``tunery[dashboard]``). ``fit``
    runs the forest (:data:`ForestFit`).
    """
    return snapshot.memo("importance", lambda: _importance(snapshot, fit))


def _importance(snapshot: Snapshot, fit: ForestFit) -> dict[str, Any]:
    rows = _valued(snapshot)
    method = "scikit-learn RandomForestRegressor feature_importances_ (mean decrease in impurity)"
    out: dict[str, Any] = {
        "objective": snapshot.objective.metric_name,
        "method": method,
        "trials": len(rows),
        "importances": [],
    }
    if len(rows) < 2 or not snapshot.parameters:
        return out
    if len(rows) > IMPORTANCE_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(rows, IMPORTANCE_ROWS, replace=False))
    features = np.column_stack(
        [_warp(p, snapshot.columns[p.name][rows]) for p in snapshot.parameters]
    )
    features = np.where(np.isnan(features), -1.0, features)
    target = snapshot.values[rows]
    if np.ptp(target) == 0:
        weights = np.full(len(snapshot.parameters), 1.0 / len(snapshot.parameters))
    else:
        weights = fit(features, target)
        total = float(weights.sum())
        weights = weights / total if total > 0 else weights
    ranked = sorted(zip(snapshot.parameters, weights.tolist(), strict=True), key=lambda pw: -pw[1])
    out["trials"] = len(rows)
    out["importances"] = [{"name": p.name, "importance": w} for p, w in ranked]
    return out


# -- timeline -----------------------------------------------------------------------------------


def timeline(snapshot: Snapshot) -> dict[str, Any]:
    """Each started trial's start and end (now while it runs), condition and GPUs."""

    def compute() -> dict[str, Any]:
        now = snapshot.now.timestamp()
        started = np.flatnonzero(~np.isnan(snapshot.start))
        return {
            "number": started.tolist(),
            "trial": [snapshot.trials[i].name for i in started],
            "condition": [snapshot.conditions[i] for i in started],
            "start": [_stamp(snapshot.start[i]) for i in started],
            "end": [
                _stamp(snapshot.end[i] if not math.isnan(snapshot.end[i]) else now)
                for i in started
            ],
            "running": [bool(math.isnan(snapshot.end[i])) for i in started],
            "gpus": [
                [str(g) for g in snapshot.trials[i].runner_handle.get("gpus") or ()]
                for i in started
            ],
        }

    return snapshot.memo("timeline", compute)


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


# -- intermediate values and the median-stop threshold ------------------------------------------


def intermediate_sample(snapshot: Snapshot, limit: int = INTERMEDIATE_TRIALS) -> list[int]:
    """Which trials' curves to draw: the running ones, the best, the early-stopped and the
    latest, at most ``limit`` in all (every trial when there are no more)."""
    n = len(snapshot.trials)
    if n <= limit:
        return list(range(n))
    chosen: dict[int, None] = {}

    def take(candidates: Sequence[int], count: int) -> None:
        for i in candidates:
            if len(chosen) >= limit or count <= 0:
                return
            if i not in chosen:
                chosen[i] = None
                count -= 1

    running = [i for i in range(n - 1, -1, -1) if snapshot.conditions[i] == "Running"]
    take(running, limit // 3)
    valued = _valued(snapshot)
    order = valued[np.argsort(snapshot.values[valued], kind="stable")]
    best = order if snapshot.minimize else order[::-1]
    take(best.tolist(), limit // 4)
    stopped = [i for i in range(n - 1, -1, -1) if snapshot.conditions[i] == "EarlyStopped"]
    take(stopped, limit // 4)
    take(list(range(n - 1, -1, -1)), limit)
    return sorted(chosen)


def intermediate_values(
    store: Store, snapshot: Snapshot, limit: int = INTERMEDIATE_TRIALS
) -> dict[str, Any]:
    """The objective metric's reports per trial (x = report number in step order, as
    medianstop counts) for a sample of trials, and medianstop's threshold per step when the
    experiment uses it."""
    return snapshot.memo(("intermediate", limit), lambda: _intermediate(store, snapshot, limit))


def _intermediate(store: Store, snapshot: Snapshot, limit: int) -> dict[str, Any]:
    from earlystop.medianstop import objective_curve

    metric = snapshot.objective.metric_name
    sample = intermediate_sample(snapshot, limit)
    names = [snapshot.trials[i].name for i in sample]
    logs = store.get_observations_for_trials(names, metric)
    curves = []
    for i, name in zip(sample, names, strict=True):
        values = objective_curve(logs[name], metric)
        curves.append(
            {
                "number": i,
                "trial": name,
                "condition": snapshot.conditions[i],
                "reason": snapshot.trials[i].reason,
                "values": values,
            }
        )
    return {
        "objective": metric,
        "trials": len(snapshot.trials),
        "shown": len(curves),
        "curves": curves,
        "threshold": median_threshold(store, snapshot, logs),
    }


def median_threshold(
    store: Store, snapshot: Snapshot, known: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any] | None:
    """medianstop's threshold at each step (None where it decides nothing), from the
    Succeeded trials (the latest :data:`THRESHOLD_TRIALS` of them); None without medianstop."""
    stopping = snapshot.spec.get("earlyStopping") or {}
    if stopping.get("algorithmName") != "medianstop":
        return None
    from earlystop.medianstop import MedianStop

    settings = {s["name"]: s["value"] for s in stopping.get("algorithmSettings") or ()}
    stopper = MedianStop.from_settings(settings)
    succeeded = [t.name for t in snapshot.trials if t.condition is TrialCondition.SUCCEEDED]
    used = succeeded[-THRESHOLD_TRIALS:]
    known = known or {}
    missing = [n for n in used if n not in known]
    logs = dict(known)
    if missing:
        logs.update(store.get_observations_for_trials(missing, snapshot.objective.metric_name))
    policy = stopper.prepare(snapshot.objective, [logs[n] for n in used])
    steps = list(range(1, policy.max_step + 1))
    values = []
    for step in steps:
        found = policy.threshold(step)
        values.append(None if found is None else found.median)
    return {
        "algorithm": "medianstop",
        "settings": settings,
        "completedTrials": len(succeeded),
        "usedTrials": len(used),
        "step": steps,
        "value": values,
    }


# -- one trial ----------------------------------------------------------------------------------


def trial_detail(store: Store, trial: TrialRecord) -> dict[str, Any]:
    """A trial's parameters, metric summaries, condition and times (its experiment read for
    the objective)."""
    record = store.get_experiment(trial.experiment_name)
    objective = objective_from_spec(record.spec.get("spec", {}))
    return {
        "name": trial.name,
        "experiment": trial.experiment_name,
        "condition": trial.condition.value,
        "reason": trial.reason,
        "message": trial.message,
        "parameters": dict(trial.assignment),
        "metrics": list((trial.observation or {}).get("metrics", [])),
        "objective": objective.metric_name,
        "objectiveValue": _selected(trial, objective).get(objective.metric_name),
        "created": _iso(trial.created_at),
        "start": _iso(trial.start_time),
        "completion": _iso(trial.completion_time),
        "gpus": [str(g) for g in trial.runner_handle.get("gpus") or ()],
        "labels": dict(trial.labels),
        "earlyStoppingRules": [dict(r) for r in trial.early_stopping_rules],
        "done": trial.condition.is_terminal,
    }
