"""``tunery validate``, ``run`` and ``resume``: check an Experiment YAML and run it locally.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`. Running is the
controller's (:mod:`controller.local`); this module reads options, shows progress and maps
errors to exit codes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from tunery.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    CliError,
    F,
    _db_option,
    _errors,
    _open_store,
    _output_option,
    main,
    store_name,
    verbosity,
)
from tunery.cli.output import print_summary

# -- validate ---------------------------------------------------------------------------------


def _load(path: str, endpoints: dict[str, str] | None = None):
    """The valid Experiment in ``path``, its algorithm settings included; exits 2 listing
    every problem otherwise."""
    from controller.settings_check import load_checked
    from tunery.experiment import ExperimentError

    try:
        return load_checked(Path(path), served_elsewhere=set(endpoints or {}))
    except ExperimentError as exc:
        _report_invalid(path, exc)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_INVALID) from None
    except (KeyboardInterrupt, SystemExit, click.ClickException):
        raise
    except Exception as exc:  # last resort: a document must never produce a traceback
        logging.getLogger(__name__).debug("unexpected error reading %s", path, exc_info=True)
        raise CliError(
            f"{path}: invalid Experiment: the document could not be read "
            f"({type(exc).__name__}: {str(exc)[:200]})",
            EXIT_INVALID,
        ) from None


_SHOWN_PROBLEMS = 50


def _report_invalid(path: str, exc: Any) -> NoReturn:
    """List the problems of an invalid document (the first 50) and exit 2."""
    click.echo(f"{path}: invalid Experiment ({len(exc.errors)} problem(s)):", err=True)
    for error in exc.errors[:_SHOWN_PROBLEMS]:
        click.echo(f"  {error}", err=True)
    if len(exc.errors) > _SHOWN_PROBLEMS:
        click.echo(f"  ... and {len(exc.errors) - _SHOWN_PROBLEMS} more", err=True)
    sys.exit(EXIT_INVALID)


# -- options shared by validate, run and resume ------------------------------------------------


def _settings(
    logs_dir: str | None, endpoints: tuple[str, ...], outage_limit: float | None = None
) -> Any:
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
    click.option(
        "--metrics-port",
        type=click.IntRange(min=0, max=65535),
        default=None,
        metavar="PORT",
        help="Serve Prometheus metrics (katib_trial_*, katib_experiment_*, latencies) on "
        "http://127.0.0.1:PORT/metrics while it runs (0 picks a free port).",
    ),
]


_seed_options = [
    click.option(
        "--enqueue",
        "enqueue_file",
        default=None,
        type=click.Path(dir_okay=False),
        metavar="POINTS.json",
        help="Evaluate these points first: a JSON (or YAML) list of {parameter: value} maps, "
        "run in order before the algorithm is asked; they count toward maxTrialCount.",
    ),
    click.option(
        "--warm-start",
        "warm_start",
        multiple=True,
        metavar="EXPERIMENT",
        help="Feed the completed trials of EXPERIMENT (same store) to the algorithm without "
        "running them (repeatable); points outside this space are skipped with a warning. "
        "They do not count toward maxTrialCount.",
    ),
]


def _with_seed_options(func: F) -> F:
    for option in reversed(_seed_options):
        func = option(func)
    return func


def _read_points(path: str, space: Any) -> list[Any]:
    """The points of an ``--enqueue`` file, each checked against ``space`` (exit 2 naming
    the point, the parameter and the value)."""
    import yaml

    from tunery.seeding import SeedError, check_point

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CliError(
            f"--enqueue: cannot read {path}: {exc.strerror or exc}", EXIT_INVALID
        ) from None
    try:
        points = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise CliError(f"--enqueue: {path} is not JSON or YAML: {exc}", EXIT_INVALID) from None
    if not isinstance(points, list):
        raise CliError(
            f"--enqueue: {path} must hold a list of {{parameter: value}} maps", EXIT_INVALID
        )
    try:
        for i, point in enumerate(points):
            check_point(space, point, f"{path}: enqueue[{i}]")
    except SeedError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    return points


def _seed(backend: Any, name: str, points: list[Any], warm_start: tuple[str, ...]) -> None:
    """Store the warm-start trials and the enqueued points of ``name`` (nothing already
    there twice, so running the same command again to resume is safe)."""
    from tunery import seeding

    store = backend.store
    for source in warm_start:
        if source == name:
            raise CliError(
                f"--warm-start: experiment {name!r} cannot warm start from itself", EXIT_INVALID
            )
        report = seeding.warm_start(store, name, seeding.results_of(store, source))
        for line in report.warnings():
            click.echo(f"warning: {line}", err=True)
        click.echo(
            f"warm start from {source!r}: {len(report.added)} trial(s) added, "
            f"{len(report.skipped)} skipped"
            + (f", {report.duplicates} already there" if report.duplicates else ""),
            err=True,
        )
    if points:
        queued = seeding.enqueue(store, name, points)
        click.echo(f"enqueued {len(queued)} point(s)", err=True)
        budget = store.get_experiment(name).spec["spec"].get("maxTrialCount")
        if budget is not None and len(points) > int(budget):
            click.echo(
                f"warning: {len(points)} points enqueued but maxTrialCount is {budget}: the "
                "points beyond it will not run (raise it with --max-trials)",
                err=True,
            )


def _check_sources(backend: Any, warm_start: tuple[str, ...]) -> None:
    """Every ``--warm-start`` experiment exists (exit 2 before anything is stored)."""
    for source in warm_start:
        if not backend.exists(source):
            raise CliError(
                f"--warm-start: no experiment {source!r} in {store_name(backend.db_url)}",
                EXIT_INVALID,
            )


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
    type=click.IntRange(min=1, max=2**31 - 1),
    default=None,
    help="Override spec.parallelTrialCount.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=None,
    help="Override spec.maxTrialCount.",
)
@_with_seed_options
@_with_run_options
@_output_option
def run(
    file: str,
    db_url: str | None,
    name: str | None,
    parallel: int | None,
    max_trials: int | None,
    enqueue_file: str | None,
    warm_start: tuple[str, ...],
    logs_dir: str | None,
    endpoints: tuple[str, ...],
    outage_limit: float | None,
    metrics_port: int | None,
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
        if not parallel and document["spec"].get("parallelTrialCount", 0) > max_trials:
            # Katib's rule (parallelTrialCount <= maxTrialCount) would refuse the document
            # for a budget the user asked for on the command line: fit the parallelism to it.
            click.echo(
                f"parallelTrialCount {document['spec']['parallelTrialCount']} lowered to "
                f"{max_trials} to fit --max-trials {max_trials}",
                err=True,
            )
            document["spec"]["parallelTrialCount"] = max_trials
    if name or parallel or max_trials:
        from tunery.experiment import ExperimentError, load_experiment

        try:
            document = load_experiment(document).to_document()
        except ExperimentError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
    points = _read_points(enqueue_file, _space(document)) if enqueue_file else []
    annotated = _annotation_sources(document)
    from controller.local import SubmitError

    with _errors(db_url):
        backend = _backend(db_url, create=True)
        _check_sources(backend, (*warm_start, *annotated))
        try:
            exp_name, created = backend.submit(document, Path(file).resolve().parent)
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        if not created:
            _refuse_finished(backend, exp_name, file)
            click.echo(f"resuming experiment {exp_name!r}", err=True)
        _seed(backend, exp_name, points, warm_start)
        _drive(backend, exp_name, settings, output, metrics_port)


def _annotation_sources(document: Any) -> list[str]:
    """Check the seed annotations (``tunery.io/enqueue``, ``tunery.io/warm-start``) before
    anything is stored (exit 2); returns the experiments they warm start from."""
    from tunery.seeding import SeedError, annotation_seeds

    try:
        return annotation_seeds(document)[1]
    except SeedError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None


def _space(document: Any) -> Any:
    from tunery.experiment import load_experiment

    return load_experiment(document).search_space()


@main.command()
@click.argument("name")
@_db_option
@click.option(
    "--max-trials",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=None,
    help="Raise spec.maxTrialCount (continues a finished experiment).",
)
@_with_seed_options
@_with_run_options
@_output_option
def resume(
    name: str,
    db_url: str | None,
    max_trials: int | None,
    enqueue_file: str | None,
    warm_start: tuple[str, ...],
    logs_dir: str | None,
    endpoints: tuple[str, ...],
    outage_limit: float | None,
    metrics_port: int | None,
    output: str,
) -> None:
    """Continue experiment NAME (after Ctrl-C, a crash, or to raise its budget)."""
    settings = _settings(logs_dir, endpoints, outage_limit)
    from controller.local import SubmitError

    with _errors(db_url):
        backend = _backend(db_url)
        record = backend.record(name)
        document = dict(record.spec)
        if max_trials:
            document = {**document, "spec": {**document["spec"], "maxTrialCount": max_trials}}
        _check_stored(name, document)
        points = _read_points(enqueue_file, _space(document)) if enqueue_file else []
        _check_sources(backend, warm_start)
        try:
            backend.submit(document, backend.base_dir(record))
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        _seed(backend, name, points, warm_start)
        _drive(backend, name, settings, output, metrics_port)


def _check_stored(name: str, document: Any) -> None:
    """Refuse to resume a stored document that is not valid (one stored by an older tunery
    with laxer checks, or edited in the database): exit 2 with its problems."""
    from tunery.experiment import ExperimentError, load_experiment

    try:
        load_experiment(document)
    except ExperimentError as exc:
        _report_invalid(f"experiment {name!r}", exc)


def _backend(db_url: str | None, *, create: bool = False) -> Any:
    """The controller's local backend over the store at ``db_url`` (created only by
    ``run``: ``resume`` of an experiment in a store that does not exist says so)."""
    from controller.local_backend import LocalBackend

    return LocalBackend(db_url, store=_open_store(db_url, create=create))


def _refuse_finished(backend: Any, name: str, file: str) -> None:
    """Running a file again whose experiment already finished does nothing: say so, and how
    to run it again or extend it (exit 2)."""
    from controller import status

    record = backend.record(name)
    if not status.is_completed(record.status):
        return
    current = status.current_condition(record.status) or {}
    extend = (
        f"  add trials:         tunery resume {name} --max-trials N "
        f"(or raise spec.maxTrialCount in {file})\n"
        if current.get("reason") == status.ExperimentReason.MAX_TRIALS_REACHED
        else ""
    )
    raise CliError(
        f"experiment {name!r} already exists in {store_name(backend.db_url)} and finished "
        f"({current.get('type')}: {current.get('reason')}, {record.status.get('trials', 0)} "
        f"trials); nothing to run.\n"
        f"  see its result:     tunery status {name}\n"
        f"{extend}"
        f"  run it again:       tunery run {file} --name NEW-NAME "
        f"(or `tunery delete {name}` first)",
        EXIT_INVALID,
    )


@contextmanager
def _metrics_served(store: Any, port: int | None) -> Iterator[None]:
    """Serve the controller's metrics (and the store's katib_*_current gauges) on
    127.0.0.1:``port`` while the experiment runs; nothing without a port."""
    if port is None:
        yield
        return
    from prometheus_client import REGISTRY

    from controller.metrics import store_gauges
    from tunery.cli.serving import start_metrics

    gauges = store_gauges(store)
    REGISTRY.register(gauges)
    server = start_metrics("127.0.0.1", port)
    try:
        yield
    finally:
        REGISTRY.unregister(gauges)
        if server is not None:
            server.shutdown()
            server.server_close()


def _drive(
    backend: Any, name: str, settings: Any, output: str, metrics_port: int | None = None
) -> None:
    from controller.clients import ServiceUnavailableError
    from controller.reconcile import ReconcileError
    from controller.templating import find_containers
    from tunery.sdk.progress import ProgressView
    from tunery.store.errors import StoreUnavailableError

    store = backend.store
    spec = store.get_experiment(name).spec["spec"]
    images = sorted(
        {
            str(c["image"])
            for c in find_containers(spec["trialTemplate"].get("trialSpec") or {})
            if c.get("image")
        }
    )
    if images and verbosity() >= 1:
        click.echo(
            f"info: trials run as local processes; image {', '.join(images)} is ignored", err=True
        )
    view = ProgressView.of_experiment(store, name, enabled=output == "text")
    try:
        with view, _metrics_served(store, metrics_port):
            result = backend.drive(name, settings, on_progress=view.update)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (controller.interrupts)
        from controller.interrupts import signal_name

        by = f" by {signal_name(exc)}" if signal_name(exc) else ""
        click.echo(
            f"\ninterrupted{by}: running trials were stopped; continue with "
            f"`tunery resume {name}`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except ReconcileError as exc:
        print_summary(store, name, output)
        raise CliError(f"experiment {name!r} failed: {exc}", EXIT_FAILED) from None
    except (ServiceUnavailableError, StoreUnavailableError) as exc:
        raise CliError(
            f"{exc}\nthe experiment is kept (trials already started keep running): continue "
            f"with `tunery resume {name}` once it is back",
            EXIT_UNAVAILABLE,
        ) from None
    print_summary(store, name, output)
    if result.condition == "Failed":
        sys.exit(EXIT_FAILED)
