"""``tunery validate``, ``run`` and ``resume``: check an Experiment YAML and run it locally.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`. Running is the
controller's (:mod:`controller.local`); this module reads options, shows progress and maps
errors to exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from tunery.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    CliError,
    F,
    _db_option,
    _errors,
    _output_option,
    main,
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
        click.echo(f"{path}: invalid Experiment ({len(exc.errors)} problem(s)):", err=True)
        for error in exc.errors:
            click.echo(f"  {error.path}: {error.message}", err=True)
        sys.exit(EXIT_INVALID)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_INVALID) from None


# -- options shared by validate, run and resume ------------------------------------------------


def _settings(logs_dir: str | None, endpoints: tuple[str, ...]):
    from controller.clients import parse_endpoints
    from controller.local import LocalSettings

    try:
        mapped = parse_endpoints(
            [*list(endpoints), os.environ.get("TUNERY_SUGGESTION_ENDPOINTS", "")]
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    return LocalSettings(
        logs_dir=Path(logs_dir or ".tunery/logs").resolve(),
        endpoints=mapped,
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
    output: str,
) -> None:
    """Run the Experiment in FILE on this machine until it completes."""
    settings = _settings(logs_dir, endpoints)
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
    from controller.local import SubmitError

    with _errors():
        backend = _backend(db_url)
        try:
            exp_name, created = backend.submit(document, Path(file).resolve().parent)
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        if not created:
            click.echo(f"resuming experiment {exp_name!r}", err=True)
        _drive(backend, exp_name, settings, output)


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
    output: str,
) -> None:
    """Continue experiment NAME (after Ctrl-C, a crash, or to raise its budget)."""
    settings = _settings(logs_dir, endpoints)
    from controller.local import SubmitError

    with _errors():
        backend = _backend(db_url)
        record = backend.record(name)
        document = dict(record.spec)
        if max_trials:
            document = {**document, "spec": {**document["spec"], "maxTrialCount": max_trials}}
        try:
            backend.submit(document, backend.base_dir(record))
        except SubmitError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        _drive(backend, name, settings, output)


def _backend(db_url: str | None) -> Any:
    """The controller's local backend over the store at ``db_url``."""
    from controller.local_backend import LocalBackend

    return LocalBackend(db_url)


def _drive(backend: Any, name: str, settings: Any, output: str) -> None:
    from controller.reconcile import ReconcileError
    from controller.templating import find_containers
    from tunery.sdk.progress import ProgressView

    store = backend.store
    spec = store.get_experiment(name).spec["spec"]
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
    view = ProgressView.of_experiment(store, name, enabled=output == "text")
    try:
        with view:
            result = backend.drive(name, settings, on_progress=view.update)
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: running trials were stopped; continue with `tunery resume {name}`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except ReconcileError as exc:
        print_summary(store, name, output)
        raise CliError(f"experiment {name!r} failed: {exc}", EXIT_FAILED) from None
    print_summary(store, name, output)
    if result.condition == "Failed":
        sys.exit(EXIT_FAILED)
