"""``tunery list``, ``status``, ``trials``, ``best``, ``logs`` and ``delete``.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`. Reads the store (never
creating one: a missing SQLite store is an error naming its path) and prints tables, JSON
(``-o json``) or, for ``trials``, CSV (``-o csv``).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import click

from tunery.cli.app import (
    EXIT_INVALID,
    CliError,
    _db_option,
    _errors,
    _namespace_option,
    _open_store,
    _output_option,
    main,
    store_name,
)
from tunery.cli.output import (
    CONDITION_WORDS,
    best_value,
    echo_json,
    experiment_summary,
    number,
    optimal_trial_document,
    parameter_types,
    print_summary,
    rounded,
    table,
    typed_best,
    typed_metrics,
    typed_parameter,
)
from tunery.store.engine import missing_sqlite_file

# -- list / status ----------------------------------------------------------------------------


@main.command("list")
@_db_option
@_namespace_option
@_output_option
def list_(db_url: str | None, namespace: str | None, output: str) -> None:
    """List experiments."""
    records: list[Any] = []  # no store yet (nothing has run with it): no experiments, none created
    others: list[str] = []  # other namespaces holding experiments, told when none was named
    if missing_sqlite_file(db_url) is None:
        with _errors(db_url, namespace):
            store = _open_store(db_url, namespace=namespace)
            records = store.list_experiments()
            if namespace is None and output == "text":
                others = [n for n in store.list_namespaces() if n != store.namespace]
    rows = [experiment_summary(r) for r in records]
    if output == "json":
        echo_json(rows)
        return
    elsewhere = f"other namespaces in this store: {', '.join(others)} (--namespace NAME)"
    if not rows:
        where = f"namespace {namespace} of " if namespace else ""
        click.echo(f"no experiments in {where}{store_name(db_url)}")
        if others:
            click.echo(elsewhere)
        return
    from controller.reconcile import objective_from_spec

    cells = []
    for record, r in zip(records, rows, strict=True):
        strategy = objective_from_spec(record.spec["spec"]).strategy(r["objective"])
        value = best_value(r["best"], r["objective"], strategy)
        shown = f"{r['objective']}={rounded(value)}" if value is not None else "-"
        cells.append([r["name"], r["condition"], str(r["trials"]), r["algorithm"], shown])
    click.echo(table(["NAME", "STATUS", "TRIALS", "ALGORITHM", "BEST"], cells, right=[2]))
    if others:
        click.echo(elsewhere)


@main.command("status")
@click.argument("name")
@_db_option
@_namespace_option
@_output_option
def status_(name: str, db_url: str | None, namespace: str | None, output: str) -> None:
    """Show an experiment's status (Katib's status fields with -o json)."""
    with _errors(db_url, namespace, name):
        store = _open_store(db_url, namespace=namespace)
        if output == "json":
            from controller.local_backend import INTERNAL_STATUS_KEYS

            record = store.get_experiment(name)
            state = {k: v for k, v in record.status.items() if k not in INTERNAL_STATUS_KEYS}
            state["currentOptimalTrial"] = typed_best(
                state.get("currentOptimalTrial") or {}, record.spec["spec"]
            )
            echo_json(state)
            return
        print_summary(store, name, output)


# -- trials -----------------------------------------------------------------------------------


def _trial_rows(store: Any, name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One JSON row per trial (schema in docs/cli.md): parameters typed by the spec, metrics
    and the objective as numbers, ``values`` each metric as its strategy selects it."""
    row = _row_maker(spec)
    return [row(t) for t in store.list_trials(name)]


def _row_maker(spec: dict[str, Any]) -> Any:
    """A function from a trial record to its JSON row (see :func:`_trial_rows`)."""
    from controller.reconcile import objective_from_spec
    from controller.status import trial_is_feasible, trial_objective_value
    from tunery.trials import MetricSummary

    objective = objective_from_spec(spec)
    types = parameter_types(spec)

    def row(t: Any) -> dict[str, Any]:
        out = _plain_row(t)
        if objective.constraints:  # only experiments with constraints have the key
            reported = bool((t.observation or {}).get("metrics"))
            out["feasible"] = trial_is_feasible(t, objective) if reported else None
        return out

    def _plain_row(t: Any) -> dict[str, Any]:
        metrics = (t.observation or {}).get("metrics", [])
        values = {
            m["name"]: number(
                MetricSummary(m["name"], m["min"], m["max"], m["latest"]).select(
                    objective.strategy(m["name"])
                )
            )
            for m in metrics
        }
        return {
            "name": t.name,
            "condition": t.condition.value,
            "reason": t.reason,
            "message": t.message,
            "labels": dict(t.labels),
            "parameters": {k: typed_parameter(v, types.get(k)) for k, v in t.assignment.items()},
            "objective": trial_objective_value(t, objective),
            "values": values,
            "metrics": typed_metrics(metrics),
            "start_time": t.start_time.isoformat() if t.start_time else None,
            "completion_time": t.completion_time.isoformat() if t.completion_time else None,
        }

    return row


_FIRST_PAGE = 100
_LARGEST_PAGE = 20_000


def _pages_by_objective(store: Any, name: str) -> Iterator[list[Any]]:
    """The trials best objective first (the store sorts them, by an index), in pages that
    grow from :data:`_FIRST_PAGE`: ``| head`` reads one small page, a full listing a few."""
    offset, size = 0, _FIRST_PAGE
    while True:
        page = store.list_trials_by_objective(name, limit=size, offset=offset)
        if page:
            yield page
        if len(page) < size:
            return
        offset += len(page)
        size = min(size * 4, _LARGEST_PAGE)


def _sort_rows(
    rows: list[dict[str, Any]], key: str, objective_name: str, maximize: bool
) -> list[dict[str, Any]]:
    """Sort by ``key``: ``objective`` (best first), a metric or parameter name, ``name``,
    ``condition``, ``start`` or ``end``; ``-key`` reverses. Trials without the value last."""
    descending = key.startswith("-")
    key = key.lstrip("-")
    if key == "objective":
        key, descending = objective_name, maximize != descending

    def value(row: dict[str, Any]) -> Any:
        fixed = {
            "name": row["name"],
            "condition": row["condition"],
            "start": row["start_time"],
            "end": row["completion_time"],
        }
        if key in fixed:
            return fixed[key]
        if key in row["values"]:
            return row["values"][key]
        return row["parameters"].get(key)

    known = {"name", "condition", "start", "end"}
    for row in rows:
        known |= set(row["values"]) | set(row["parameters"])
    if rows and key not in known:
        columns = ", ".join(sorted(known - {"objective"}))  # a metric may be named objective
        raise CliError(
            f"--sort: unknown column {key!r} (known: objective, {columns})",
            EXIT_INVALID,
        )
    # numbers when there are any ("unavailable" metrics and absent values go last), else text
    numeric = [r for r in rows if _is_number(value(r))]
    present = numeric or [r for r in rows if isinstance(value(r), str)]
    chosen = {id(r) for r in present}
    present.sort(key=value, reverse=descending)
    return present + [r for r in rows if id(r) not in chosen]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_CONDITIONS = {c.lower(): c for c in CONDITION_WORDS}


@main.command()
@click.argument("name")
@_db_option
@_namespace_option
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="json or csv print every value at full precision (schema: docs/cli.md).",
)
@click.option(
    "--sort",
    "sort_key",
    default=None,
    metavar="COLUMN",
    help="Sort by objective (best first), a metric or parameter name, name, condition, start "
    "or end; -COLUMN reverses (e.g. --sort=-lr).",
)
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    type=click.Choice(sorted(CONDITION_WORDS), case_sensitive=False),
    help="Show only trials in this condition (repeatable).",
)
def trials(
    name: str,
    db_url: str | None,
    namespace: str | None,
    output: str,
    sort_key: str | None,
    conditions: tuple[str, ...],
) -> None:
    """List the trials of experiment NAME: every metric, every parameter."""
    from controller.reconcile import objective_from_spec

    with _errors(db_url, namespace, name):
        store = _open_store(db_url, namespace=namespace)
        spec = store.get_experiment(name).spec["spec"]
        if sort_key == "objective" and output in ("text", "csv"):
            _stream_by_objective(store, name, spec, output, conditions)
            return
        rows = _trial_rows(store, name, spec)
    objective = objective_from_spec(spec)
    if conditions:
        wanted = {_CONDITIONS[c.lower()] for c in conditions}
        rows = [r for r in rows if r["condition"] in wanted]
    if sort_key:
        rows = _sort_rows(rows, sort_key, objective.metric_name, objective.type == "maximize")
    if output == "json":
        echo_json(rows)
        return
    metric_names = _metric_names(rows, objective.metric_name)
    param_names = [p["name"] for p in spec.get("parameters") or []]
    if output == "csv":
        click.echo(_csv(rows, metric_names, param_names), nl=False)
        return
    headers = [
        "TRIAL",
        "STATUS",
        *(f"{m}({objective.strategy(m)})" for m in metric_names),
        *param_names,
    ]
    cells = _cells(rows, metric_names, param_names)
    click.echo(table(headers, cells, right=range(2, 2 + len(metric_names))))
    problems = [r for r in rows if r["condition"] in ("Failed", "MetricsUnavailable", "Killed")]
    for r in problems:
        first = r["message"].splitlines()[0] if r["message"] else ""
        click.echo(f"{r['name']}: {r['reason']}: {first}")


def _stream_by_objective(
    store: Any, name: str, spec: dict[str, Any], output: str, conditions: tuple[str, ...]
) -> None:
    """``trials --sort objective`` as text or CSV, printed page by page as the store returns
    them best first, so its cost follows what is read (``| head`` stops it early). The columns
    are those of the first page (its metrics; its widths for the text table)."""
    from controller.reconcile import objective_from_spec

    objective = objective_from_spec(spec)
    make_row = _row_maker(spec)
    wanted = {_CONDITIONS[c.lower()] for c in conditions}
    param_names = [p["name"] for p in spec.get("parameters") or []]
    problems: list[dict[str, Any]] = []
    layout: tuple[list[str], list[int]] | None = None
    try:
        for page in _pages_by_objective(store, name):
            rows = [make_row(t) for t in page]
            if wanted:
                rows = [r for r in rows if r["condition"] in wanted]
            if layout is None:
                metric_names = _metric_names(rows, objective.metric_name)
                if output == "csv":
                    layout = (metric_names, [])
                    click.echo(_csv(rows, metric_names, param_names), nl=False)
                    continue
                headers = [
                    "TRIAL",
                    "STATUS",
                    *(f"{m}({objective.strategy(m)})" for m in metric_names),
                    *param_names,
                ]
                cells = _cells(rows, metric_names, param_names)
                widths = [
                    max(len(c) for c in column) for column in zip(headers, *cells, strict=True)
                ]
                layout = (metric_names, widths)
                click.echo(_aligned([headers, *cells], widths, 2 + len(metric_names)))
            elif output == "csv":
                text = _csv(rows, layout[0], param_names)
                click.echo(text[text.index("\n") + 1 :], nl=False)  # no second header
            elif rows:
                cells = _cells(rows, layout[0], param_names)
                click.echo(_aligned(cells, layout[1], 2 + len(layout[0])))
            problems += [r for r in rows if r["condition"] in _PROBLEMS]
        if layout is None and output == "text":
            click.echo(table(["TRIAL", "STATUS"], []))
        if output == "text":
            for r in problems:
                first = r["message"].splitlines()[0] if r["message"] else ""
                click.echo(f"{r['name']}: {r['reason']}: {first}")
    except BrokenPipeError:  # the reader (head) has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


_PROBLEMS = ("Failed", "MetricsUnavailable", "Killed")


def shown_status(row: Mapping[str, Any]) -> str:
    """The STATUS cell: the condition, marked for warm-start trials (imported results, never
    run), for enqueued ones still waiting in the queue, and for trials that break a
    constraint."""
    from tunery.seeding import ENQUEUED_LABEL, WARM_START_LABEL

    labels = row.get("labels") or {}
    if labels.get(WARM_START_LABEL) == "true":
        return f"{row['condition']} (warm start)"
    if labels.get(ENQUEUED_LABEL) == "true" and row["condition"] == "Created":
        return "Created (enqueued)"
    if row.get("feasible") is False:
        return f"{row['condition']} (infeasible)"
    return str(row["condition"])


def _cells(
    rows: Sequence[dict[str, Any]], metric_names: list[str], param_names: list[str]
) -> list[list[str]]:
    return [
        [
            r["name"],
            shown_status(r),
            *(rounded(r["values"].get(m)) for m in metric_names),
            *(rounded(r["parameters"].get(p)) for p in param_names),
        ]
        for r in rows
    ]


def _aligned(rows: Sequence[Sequence[str]], widths: Sequence[int], metrics_end: int) -> str:
    """Rows padded to ``widths`` as :func:`table` does (metric columns right-aligned)."""
    return "\n".join(
        "  ".join(
            cell.rjust(width) if 2 <= i < metrics_end else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _metric_names(rows: Sequence[dict[str, Any]], objective_name: str) -> list[str]:
    """The objective first, then every other metric any trial reported, by name."""
    others = sorted({m for r in rows for m in r["values"]} - {objective_name})
    return [objective_name, *others]


def _csv(rows: Sequence[dict[str, Any]], metric_names: list[str], param_names: list[str]) -> str:
    """One header row, one row per trial; metrics as their strategies select them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["name", "condition", "reason", *metric_names, *param_names, "start_time", "end_time"]
    )
    for r in rows:
        writer.writerow(
            [
                r["name"],
                r["condition"],
                r["reason"],
                *("" if r["values"].get(m) is None else r["values"][m] for m in metric_names),
                *(
                    "" if r["parameters"].get(p) is None else r["parameters"][p]
                    for p in param_names
                ),
                r["start_time"] or "",
                r["completion_time"] or "",
            ]
        )
    return buffer.getvalue()


# -- best -------------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@_db_option
@_namespace_option
@_output_option
def best(name: str, db_url: str | None, namespace: str | None, output: str) -> None:
    """Print the best trial's parameters and metrics; for a multi-objective experiment, the
    Pareto front (every non-dominated trial with its objective values)."""
    from controller.reconcile import objective_from_spec

    with _errors(db_url, namespace, name):
        store = _open_store(db_url, namespace=namespace)
        record = store.get_experiment(name)
        spec = record.spec["spec"]
        if objective_from_spec(spec).is_multi:
            trials = store.list_trials(name)
    if objective_from_spec(spec).is_multi:
        _print_pareto_front(name, trials, spec, output)
        return
    with _errors(db_url, namespace, name):
        found = store.best_trial(name)  # one indexed query, fresh even while it runs
    document = (
        optimal_trial_document(found)
        if found is not None
        else record.status.get("currentOptimalTrial") or {}
    )
    best_trial = typed_best(document, spec)
    if not best_trial.get("bestTrialName"):
        raise CliError(f"experiment {name!r} has no trial with the objective metric yet")
    if output == "json":
        echo_json(best_trial)
        return
    objective = objective_from_spec(spec)
    click.echo(best_trial["bestTrialName"])
    for p in best_trial["parameterAssignments"]:
        click.echo(f"  {p['name']} = {rounded(p['value'])}")
    for m in best_trial["observation"]["metrics"]:
        click.echo(
            f"  {m['name']}: min={rounded(m['min'])} max={rounded(m['max'])} "
            f"latest={rounded(m['latest'])} (strategy {objective.strategy(m['name'])})"
        )


def _print_pareto_front(
    name: str, trials: Sequence[Any], spec: Mapping[str, Any], output: str
) -> None:
    from controller.reconcile import objective_from_spec
    from controller.status import pareto_front_trials

    objective = objective_from_spec(spec)
    front = pareto_front_trials(trials, objective)
    if not front:
        raise CliError(
            f"experiment {name!r} has no trial with every objective metric yet "
            f"({', '.join(objective.objective_metric_names)})"
        )
    first = objective.terms[0]
    front.sort(key=lambda pair: first.sign * pair[1][0])
    types = parameter_types(spec)
    if output == "json":
        echo_json(
            {
                "objectives": [
                    {"name": t.metric_name, "type": t.type.value} for t in objective.terms
                ],
                "paretoFront": [
                    {
                        "trialName": trial.name,
                        "values": dict(zip(objective.objective_metric_names, values, strict=True)),
                        "parameterAssignments": {
                            k: typed_parameter(v, types.get(k))
                            for k, v in trial.assignment.items()
                        },
                    }
                    for trial, values in front
                ],
            }
        )
        return
    params = list(front[0][0].assignment)
    headers = [
        "trial",
        *(f"{t.metric_name} ({'min' if t.sign > 0 else 'max'})" for t in objective.terms),
        *params,
    ]
    rows = [
        [
            trial.name,
            *(rounded(v) for v in values),
            *(rounded(trial.assignment.get(p, "")) for p in params),
        ]
        for trial, values in front
    ]
    click.echo(f"Pareto front of {name}: {len(front)} trial(s)")
    click.echo(table(headers, rows, right=range(1, 1 + len(objective.terms))))


# -- logs -------------------------------------------------------------------------------------


@main.command()
@click.argument("name", metavar="TRIAL|EXPERIMENT")
@_db_option
@_namespace_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the trial runs.")
def logs(name: str, db_url: str | None, namespace: str | None, follow: bool) -> None:
    """Print a trial's output; for an experiment, every trial's output, each line prefixed
    with the trial's name."""
    from controller.local_backend import LocalBackend
    from tunery.store.errors import NotFoundError

    with _errors(db_url, namespace, name):
        backend = LocalBackend(db_url, store=_open_store(db_url, namespace=namespace))
        try:
            record = backend.store.get_trial(name)
        except NotFoundError:
            try:
                backend.store.get_experiment(name)
            except NotFoundError:
                raise NotFoundError(f"no trial or experiment named {name!r}") from None
            _experiment_logs(backend, name, follow)
            return
        if not backend.log_path(record):
            raise CliError(f"trial {name!r} has no log yet ({record.condition.value})")
        for line in backend.log_lines(name, follow, timeout=float("inf")):
            click.echo(line)


def _experiment_logs(backend: Any, name: str, follow: bool) -> None:
    if follow:
        raise CliError(
            f"{name!r} is an experiment: follow one of its trials (`tunery logs TRIAL -f`; "
            f"`tunery trials {name}` lists them)",
            EXIT_INVALID,
        )
    for trial in backend.store.list_trials(name):
        path = backend.log_path(trial)
        if not path:
            click.echo(f"[{trial.name}] (no log: {trial.condition.value})")
            continue
        click.echo(f"[{trial.name}] --- {path} ({trial.condition.value})")
        for line in backend.log_lines(trial.name, False, timeout=0):
            click.echo(f"[{trial.name}] {line}")


# -- delete -----------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@_db_option
@_namespace_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, db_url: str | None, namespace: str | None, yes: bool) -> None:
    """Delete experiment NAME, its trials and their metrics."""
    from controller.local_backend import LocalBackend

    with _errors(db_url, namespace, name):
        backend = LocalBackend(db_url, store=_open_store(db_url, namespace=namespace))
        backend.record(name)
        if not yes and sys.stdin.isatty():
            click.confirm(f"delete experiment {name!r} and all its trials?", abort=True)
        backend.delete_experiment(name)
    click.echo(f"deleted {name}")
