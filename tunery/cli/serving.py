"""``tunery serve suggestion|earlystop|dbmanager`` and ``tunery operator``: long-running services.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`.
"""

from __future__ import annotations

import click

from tunery.cli.app import (
    _db_option,
    _errors,
    main,
)

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
    with _errors(db_url):
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
    with _errors(db_url):
        serve_forever(host=host, port=port, db_url=db_url)


@serve.command("dbmanager")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=6789, show_default=True, type=int)
@_db_option
def serve_dbmanager(host: str, port: int, db_url: str | None) -> None:
    """api.v1.beta1.DBManager over the store."""
    from metrics_collector.dbmanager import serve as serve_forever

    click.echo(f"tunery DBManager service on {host}:{port}", err=True)
    with _errors(db_url):
        serve_forever(host=host, port=port, db_url=db_url)
