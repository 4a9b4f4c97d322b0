"""The ``tunery`` command: run, resume and inspect experiments; validate YAML; serve gRPC.

The public face for shell users (the console script). Every command maps the packages' errors
to messages and exit codes here, once; no traceback reaches a user.

Exit codes: 0 success; 1 the experiment failed (or a trial/experiment was not found);
2 invalid input (usage, YAML, validation); 3 the database or a service is unavailable;
130 interrupted (Ctrl-C; the experiment stays resumable).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _db_option(func: F) -> F:
    return click.option(
        "--db",
        "db_url",
        envvar="TUNERY_DB_URL",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the store (default: sqlite .tunery/tunery.db; env TUNERY_DB_URL).",
    )(func)


def _output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints machine-readable output.",
    )(func)


@contextmanager
def _errors() -> Iterator[None]:
    """Map the packages' errors to messages and exit codes."""
    from tunery.store.errors import NotFoundError, StoreError, StoreUnavailableError

    try:
        yield
    except NotFoundError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except StoreUnavailableError as exc:
        raise CliError(f"database unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except StoreError as exc:
        raise CliError(f"store error: {exc}", EXIT_UNAVAILABLE) from None


def _open_store(db_url: str | None):
    from tunery.store import open_store

    return open_store(db_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="tunery")
def main(verbose: int) -> None:
    """tunery: hyperparameter tuning, compatible with Kubeflow Katib."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- validate ---------------------------------------------------------------------------------


def _load(path: str, endpoints: dict[str, str] | None = None):
    """The valid Experiment in ``path``, its algorithm settings included; exits 2 listing
    every problem otherwise."""
    from controller.settings_check import load_checked
    from tunery.experiment import ExperimentError

    try:
        return load_checked(Path(path), served_elsewhere=set(endpoints or {}))
    except ExperimentError as exc:
        click.echo(f"{path}: invalid Experiment ({len(exc.errors)} problem(s)):", err=True)
        for error in exc.errors:
            click.echo(f"  {error.path}: {error.message}", err=True)
        sys.exit(EXIT_INVALID)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_INVALID) from None


# -- options shared by validate, run and resume ------------------------------------------------


def _settings(logs_dir: str | None, endpoints: tuple[str, ...], outage_limit: float | None = None):
    from controller.clients import parse_endpoints
    from controller.local import LocalSettings
    from tunery.retry import InvalidRetryPolicyError, RetryPolicy

    try:
        mapped = parse_endpoints(
            [*list(endpoints), os.environ.get("TUNERY_SUGGESTION_ENDPOINTS", "")]
        )
        outage = RetryPolicy.from_env(limit=outage_limit)
    except (ValueError, InvalidRetryPolicyError) as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    return LocalSettings(
        logs_dir=Path(logs_dir or ".tunery/logs").resolve(),
        endpoints=mapped,
        outage=outage,
    )


_endpoint_option = click.option(
    "--suggestion-endpoint",
    "endpoints",
    multiple=True,
    metavar="NAME=HOST:PORT",
    help="Serve algorithm NAME from a Katib-compatible gRPC Suggestion server "
    "(repeatable; env TUNERY_SUGGESTION_ENDPOINTS=a=h:p,b=h:p).",
)
_run_options = [
    click.option(
        "--logs-dir",
        default=None,
        metavar="DIR",
        help="Where trial logs go (default .tunery/logs).",
    ),
    _endpoint_option,
    click.option(
        "--outage-limit",
        type=click.FloatRange(min=0),
        default=None,
        metavar="SECONDS",
        help="How long a database or suggestion-service outage is waited out before exiting 3 "
        "(default 600; env TUNERY_OUTAGE_LIMIT).",
    ),
]


def _with_run_options(func: F) -> F:
    for option in reversed(_run_options):
        func = option(func)
    return func


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_endpoint_option
def validate(file: str, endpoints: tuple[str, ...]) -> None:
    """Check an Experiment YAML, its algorithm settings included; list every problem by
    field path (exit 2)."""
    experiment = _load(file, dict(_settings(None, endpoints).endpoints))
    click.echo(f"{file}: valid Experiment {experiment.name!r}")


# -- run / resume -------------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_db_option
@click.option("--name", default=None, help="Override metadata.name.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Override spec.parallelTrialCount.",
)
@click.option(
    "--max-trials", type=click.IntRange(min=1), default=None, help="Override spec.maxTrialCount."
)
@_with_run_options
@_output_option
def run(
    file: str,
    db_url: str | None,
    name: str | None,
    parallel: int | None,
    max_trials: int | None,
    logs_dir: str | None,
    endpoints: tuple[str, ...],
    outage_limit: float | None,
    output: str,
) -> None:
    """Run the Experiment in FILE on this machine until it completes."""
    settings = _settings(logs_dir, endpoints, outage_limit)
    experiment = _load(file, dict(settings.endpoints))
    document = experiment.to_document()
    if name:
        document["metadata"]["name"] = name
    if parallel:
        document["spec"]["parallelTrialCount"] = parallel
    if max_trials:
        document["spec"]["maxTrialCount"] = max_trials
    if name or parallel or max_trials:
        from tunery.experiment import ExperimentError, load_experiment

        try:
            document = load_experiment(document).to_document()
        except ExperimentError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
    from controller.local import SubmitError, submit

    with _errors():
        store = _open_store(db_url)
        try:
            exp_name, created = submit(store, document, Path(file).resolve().parent)
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        if not created:
            click.echo(f"resuming experiment {exp_name!r}", err=True)
        _drive(store, exp_name, settings, output)


@main.command()
@click.argument("name")
@_db_option
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    default=None,
    help="Raise spec.maxTrialCount (continues a finished experiment).",
)
@_with_run_options
@_output_option
def resume(
    name: str,
    db_url: str | None,
    max_trials: int | None,
    logs_dir: str | None,
    endpoints: tuple[str, ...],
    outage_limit: float | None,
    output: str,
) -> None:
    """Continue experiment NAME (after Ctrl-C, a crash, or to raise its budget)."""
    settings = _settings(logs_dir, endpoints, outage_limit)
    from controller.local import BASE_DIR_KEY, SubmitError, submit

    with _errors():
        store = _open_store(db_url)
        record = store.get_experiment(name)
        document = dict(record.spec)
        if max_trials:
            document = {**document, "spec": {**document["spec"], "maxTrialCount": max_trials}}
        try:
            submit(store, document, Path(record.status.get(BASE_DIR_KEY, ".")))
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        _drive(store, name, settings, output)


def _drive(store: Any, name: str, settings: Any, output: str) -> None:
    from controller.clients import ServiceUnavailableError
    from controller.local import run_until_done
    from controller.reconcile import ReconcileError, objective_from_spec
    from controller.templating import find_containers
    from tunery.progress import ProgressView
    from tunery.store.errors import StoreUnavailableError

    spec = store.get_experiment(name).spec["spec"]
    objective = objective_from_spec(spec)
    images = sorted(
        {
            str(c["image"])
            for c in find_containers(spec["trialTemplate"].get("trialSpec") or {})
            if c.get("image")
        }
    )
    if images and output == "text":
        click.echo(
            f"info: trials run as local processes; image {', '.join(images)} is ignored", err=True
        )
    view = ProgressView(name, objective=objective, enabled=output == "text")
    try:
        with view:
            result = run_until_done(store, name, settings, on_progress=view.update)
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: running trials were stopped; continue with `tunery resume {name}`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except ReconcileError as exc:
        _print_summary(store, name, output)
        raise CliError(f"experiment {name!r} failed: {exc}", EXIT_FAILED) from None
    except (ServiceUnavailableError, StoreUnavailableError) as exc:
        raise CliError(
            f"{exc}\nthe experiment is kept (trials already started keep running): continue "
            f"with `tunery resume {name}` once it is back",
            EXIT_UNAVAILABLE,
        ) from None
    _print_summary(store, name, output)
    if result.condition == "Failed":
        sys.exit(EXIT_FAILED)


# -- inspection -------------------------------------------------------------------------------


def _experiment_summary(record: Any) -> dict[str, Any]:
    from controller import status as st

    current = st.current_condition(record.status) or {}
    return {
        "name": record.name,
        "condition": current.get("type", "Created"),
        "reason": current.get("reason", ""),
        "message": current.get("message", ""),
        "trials": record.status.get("trials", 0),
        "succeeded": record.status.get("trialsSucceeded", 0),
        "failed": record.status.get("trialsFailed", 0),
        "running": record.status.get("trialsRunning", 0),
        "algorithm": record.spec["spec"]["algorithm"]["algorithmName"],
        "objective": record.spec["spec"]["objective"]["objectiveMetricName"],
        "type": record.spec["spec"]["objective"]["type"],
        "best": record.status.get("currentOptimalTrial") or {},
        "created": record.created_at.isoformat(),
    }


def _best_value(best: dict[str, Any], metric: str) -> str:
    for m in (best.get("observation") or {}).get("metrics", []):
        if m["name"] == metric:
            return m.get("latest", "")
    return ""


def _print_summary(store: Any, name: str, output: str) -> None:
    record = store.get_experiment(name)
    summary = _experiment_summary(record)
    if output == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"experiment {name}: {summary['condition']} ({summary['reason']}) - {summary['message']}"
    )
    click.echo(
        f"trials: {summary['trials']} ({summary['succeeded']} succeeded, "
        f"{summary['failed']} failed)"
    )
    best = summary["best"]
    if best.get("bestTrialName"):
        params = ", ".join(f"{p['name']}={p['value']}" for p in best["parameterAssignments"])
        metrics = ", ".join(
            f"{m['name']}={_select(m, record, m['name'])}" for m in best["observation"]["metrics"]
        )
        click.echo(f"best trial: {best['bestTrialName']}: {metrics}")
        click.echo(f"  parameters: {params}")
    else:
        click.echo("best trial: none yet")


def _select(metric: dict[str, str], record: Any, name: str) -> str:
    from controller.reconcile import objective_from_spec
    from tunery.trials import MetricSummary

    objective = objective_from_spec(record.spec["spec"])
    summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
    return summary.select(objective.strategy(name))


@main.command("list")
@_db_option
@_output_option
def list_(db_url: str | None, output: str) -> None:
    """List experiments."""
    with _errors():
        records = _open_store(db_url).list_experiments()
    rows = [_experiment_summary(r) for r in records]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no experiments")
        return
    click.echo(f"{'NAME':30} {'STATUS':10} {'TRIALS':>6} {'ALGORITHM':20} BEST")
    for r in rows:
        best = _best_value(r["best"], r["objective"])
        shown = f"{r['objective']}={best}" if best else "-"
        click.echo(
            f"{r['name']:30} {r['condition']:10} {r['trials']:>6} {r['algorithm']:20} {shown}"
        )


@main.command("status")
@click.argument("name")
@_db_option
@_output_option
def status_(name: str, db_url: str | None, output: str) -> None:
    """Show an experiment's status (Katib's status fields with -o json)."""
    with _errors():
        store = _open_store(db_url)
        if output == "json":
            click.echo(json.dumps(store.get_experiment(name).status, indent=2, default=str))
            return
        _print_summary(store, name, output)


def _trial_rows(store: Any, name: str, objective: Any) -> list[dict[str, Any]]:
    from controller.status import trial_objective_value

    return [
        {
            "name": t.name,
            "condition": t.condition.value,
            "reason": t.reason,
            "message": t.message,
            "parameters": dict(t.assignment),
            "objective": trial_objective_value(t, objective),
            "metrics": (t.observation or {}).get("metrics", []),
            "start_time": t.start_time.isoformat() if t.start_time else None,
            "completion_time": t.completion_time.isoformat() if t.completion_time else None,
        }
        for t in store.list_trials(name)
    ]


@main.command()
@click.argument("name")
@_db_option
@_output_option
def trials(name: str, db_url: str | None, output: str) -> None:
    """List the trials of experiment NAME."""
    from controller.reconcile import objective_from_spec

    with _errors():
        store = _open_store(db_url)
        objective = objective_from_spec(store.get_experiment(name).spec["spec"])
        rows = _trial_rows(store, name, objective)
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'TRIAL':32} {'STATUS':18} {objective.metric_name.upper():>12}  PARAMETERS")
    for r in rows:
        value = "-" if r["objective"] is None else f"{r['objective']:.6g}"
        params = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
        click.echo(f"{r['name']:32} {r['condition']:18} {value:>12}  {params}")
        if r["condition"] not in ("Succeeded", "Running", "Created"):
            click.echo(
                f"{'':32} {r['reason']}: {r['message'].splitlines()[0] if r['message'] else ''}"
            )


@main.command()
@click.argument("name")
@_db_option
@_output_option
def best(name: str, db_url: str | None, output: str) -> None:
    """Print the best trial's parameters and metrics."""
    with _errors():
        record = _open_store(db_url).get_experiment(name)
    best_trial = record.status.get("currentOptimalTrial") or {}
    if not best_trial.get("bestTrialName"):
        raise CliError(f"experiment {name!r} has no trial with the objective metric yet")
    if output == "json":
        click.echo(json.dumps(best_trial, indent=2))
        return
    click.echo(best_trial["bestTrialName"])
    for p in best_trial["parameterAssignments"]:
        click.echo(f"  {p['name']} = {p['value']}")
    for m in best_trial["observation"]["metrics"]:
        click.echo(f"  {m['name']}: min={m['min']} max={m['max']} latest={m['latest']}")


@main.command()
@click.argument("trial")
@_db_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the trial runs.")
def logs(trial: str, db_url: str | None, follow: bool) -> None:
    """Print a trial's output."""
    from tunery.trials import TrialCondition

    with _errors():
        store = _open_store(db_url)
        record = store.get_trial(trial)
        path = record.runner_handle.get("log")
        if not path or not Path(path).exists():
            raise CliError(f"trial {trial!r} has no log yet ({record.condition.value})")
        with open(path, "rb") as handle:
            while True:
                chunk = handle.read(65536)
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                    continue
                if not follow:
                    return
                current = store.get_trial(trial)
                if current.condition.is_terminal and current.completion_time is not None:
                    return
                if current.condition is TrialCondition.CREATED:
                    return
                time.sleep(0.25)


@main.command()
@click.argument("name")
@_db_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, db_url: str | None, yes: bool) -> None:
    """Delete experiment NAME, its trials and their metrics."""
    with _errors():
        store = _open_store(db_url)
        store.get_experiment(name)
        if not yes and sys.stdin.isatty():
            click.confirm(f"delete experiment {name!r} and all its trials?", abort=True)
        store.delete_experiment(name)
    click.echo(f"deleted {name}")


# -- operator --------------------------------------------------------------------------------


@main.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Watch only these namespaces (repeatable; default: all).",
)
@_db_option
def operator(namespaces: tuple[str, ...], db_url: str | None) -> None:
    """Run the Kubernetes operator (reconciles kubeflow.org/v1beta1 Experiments)."""
    import dataclasses

    from controller.operator import run_operator
    from controller.operator.core import OperatorSettings

    settings = OperatorSettings.from_env()
    if namespaces:
        settings = dataclasses.replace(settings, namespaces=namespaces)
    if db_url:
        settings = dataclasses.replace(settings, db_url=db_url)
    with _errors():
        run_operator(settings)


# -- serve -----------------------------------------------------------------------------------


@main.group()
def serve() -> None:
    """Run a Katib-compatible gRPC service."""


@serve.command("suggestion")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=6789, show_default=True, type=int)
def serve_suggestion(host: str, port: int) -> None:
    """api.v1.beta1.Suggestion: every registered algorithm, one shared server."""
    from suggestion.server import serve as serve_forever

    click.echo(f"tunery suggestion service on {host}:{port}", err=True)
    serve_forever(host=host, port=port)


@serve.command("earlystop")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=6788, show_default=True, type=int)
@_db_option
def serve_earlystop(host: str, port: int, db_url: str | None) -> None:
    """api.v1.beta1.EarlyStopping (medianstop)."""
    from earlystop.server import serve as serve_forever

    click.echo(f"tunery early-stopping service on {host}:{port}", err=True)
    with _errors():
        serve_forever(host=host, port=port, db_url=db_url)


@serve.command("dbmanager")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=6789, show_default=True, type=int)
@_db_option
def serve_dbmanager(host: str, port: int, db_url: str | None) -> None:
    """api.v1.beta1.DBManager over the store."""
    from metrics_collector.dbmanager import serve as serve_forever

    click.echo(f"tunery DBManager service on {host}:{port}", err=True)
    with _errors():
        serve_forever(host=host, port=port, db_url=db_url)


if __name__ == "__main__":
    main()
