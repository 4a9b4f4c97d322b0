"""``tunery serve suggestion|earlystop|dbmanager`` and ``tunery operator``: long-running services.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from tunery.cli.app import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    CliError,
    F,
    _db_option,
    _errors,
    main,
)

_metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    envvar="TUNERY_METRICS_PORT",
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port; env "
    "TUNERY_METRICS_PORT; default: none).",
)


def start_metrics(host: str, port: int | None) -> Any:
    """Serve the process's Prometheus metrics when ``port`` is set (the address on stderr);
    returns the HTTP server (None without a port)."""
    if port is None:
        return None
    from tunery.serving import address
    from tunery.telemetry import serve_metrics

    try:
        server, bound = serve_metrics(port, host)
    except OSError as exc:
        message = f"cannot serve metrics on {address(host, port)}: {exc}"
        raise CliError(message, EXIT_UNAVAILABLE) from None
    click.echo(f"metrics on http://{address(host, bound)}/metrics", err=True)
    return server


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
@_metrics_port_option
def operator(namespaces: tuple[str, ...], db_url: str | None, metrics_port: int | None) -> None:
    """Run the Kubernetes operator (reconciles kubeflow.org/v1beta1 Experiments).

    With --metrics-port it serves Katib's controller metrics (katib_experiment_*,
    katib_trial_*) and reconcile latencies on every interface, as Katib's controller does on
    :8080. Several replicas elect one leader through a Lease; the others wait (docs/kubernetes.md).
    """
    import dataclasses

    from controller.operator import run_operator
    from controller.operator.core import OperatorSettings

    settings = OperatorSettings.from_env()
    if namespaces:
        settings = dataclasses.replace(settings, namespaces=namespaces)
    if db_url:
        settings = dataclasses.replace(settings, db_url=db_url)
    from controller.operator import LeadershipLostError
    from controller.operator.leader import LeaseSettings

    try:
        lease = LeaseSettings.from_env()
    except ValueError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    with _errors(db_url):
        start_metrics("0.0.0.0", metrics_port)
        try:
            run_operator(settings, lease=lease)
        except LeadershipLostError as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None


# -- serve -----------------------------------------------------------------------------------


@main.group()
def serve() -> None:
    """Run a Katib-compatible gRPC service.

    Each listens on 127.0.0.1 unless given --host; with --tls-cert/--tls-key it speaks only
    TLS, and with --tls-client-ca it requires client certificates. tunery's own clients use
    TLS when TUNERY_TLS_CA is set (TUNERY_TLS_CERT/TUNERY_TLS_KEY for mutual TLS); see
    docs/security.md.
    """


def _server_options(port: int) -> Callable[[F], F]:
    """--host/--port and the TLS options shared by the three services."""

    def decorate(func: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--host",
                    default="127.0.0.1",
                    show_default=True,
                    help="Address to bind; 0.0.0.0 (as deploy/ passes) listens on every "
                    "interface.",
                ),
                click.option("--port", default=port, show_default=True, type=int),
                _metrics_port_option,
                click.option(
                    "--tls-cert",
                    envvar="TUNERY_TLS_SERVER_CERT",
                    metavar="PEM",
                    help="Serve TLS with this certificate chain (with --tls-key; env "
                    "TUNERY_TLS_SERVER_CERT).",
                ),
                click.option(
                    "--tls-key",
                    envvar="TUNERY_TLS_SERVER_KEY",
                    metavar="PEM",
                    help="The certificate's private key (env TUNERY_TLS_SERVER_KEY).",
                ),
                click.option(
                    "--tls-client-ca",
                    envvar="TUNERY_TLS_CLIENT_CA",
                    metavar="PEM",
                    help="Mutual TLS: require client certificates signed by this CA (env "
                    "TUNERY_TLS_CLIENT_CA).",
                ),
            ]
        ):
            func = option(func)
        return func

    return decorate


@contextmanager
def _serving(tls: tuple[str | None, str | None, str | None]) -> Iterator[Any]:
    """The server TLS settings; bad TLS or address settings exit 2, a bind failure 3."""
    from tunery.tls import ServerTls

    try:
        with _errors():
            yield ServerTls.from_options(*tls)
    except ValueError as exc:  # TlsError, a malformed address setting
        raise CliError(str(exc), EXIT_INVALID) from None
    except OSError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


@serve.command("suggestion")
@_server_options(6789)
@click.option(
    "--katib-data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="For a Katib controller: prepare pbt trials' checkpoint folders under "
    "DIR/<experiment>/<trial>, as Katib's pbt service does on its volume (/opt/katib/data). "
    "tunery's own controller does not need it.",
)
def serve_suggestion(
    host: str,
    port: int,
    metrics_port: int | None,
    katib_data_dir: Path | None = None,
    **tls: str | None,
) -> None:
    """api.v1.beta1.Suggestion: every registered algorithm, one shared server.

    SIGTERM stops it: calls in flight get 5 s, then the process exits (see docs/security.md).
    """
    from suggestion.server import serve as serve_forever

    with _serving((tls["tls_cert"], tls["tls_key"], tls["tls_client_ca"])) as server_tls:
        click.echo(f"tunery suggestion service on {host}:{port}", err=True)
        start_metrics(host, metrics_port)
        serve_forever(host=host, port=port, tls=server_tls, katib_data_dir=katib_data_dir)


@serve.command("earlystop")
@_server_options(6788)
@_db_option
@click.option(
    "--db-manager-address",
    envvar="TUNERY_DB_MANAGER_ADDRESS",
    metavar="HOST:PORT",
    help="Without --db: read observations from this DBManager (env TUNERY_DB_MANAGER_ADDRESS);"
    " the address a request names is ignored.",
)
def serve_earlystop(
    host: str,
    port: int,
    metrics_port: int | None,
    db_url: str | None,
    db_manager_address: str | None,
    **tls: str | None,
) -> None:
    """api.v1.beta1.EarlyStopping (medianstop, asha)."""
    from earlystop.server import serve as serve_forever

    with _serving((tls["tls_cert"], tls["tls_key"], tls["tls_client_ca"])) as server_tls:
        click.echo(f"tunery early-stopping service on {host}:{port}", err=True)
        start_metrics(host, metrics_port)
        serve_forever(
            host=host,
            port=port,
            db_url=db_url,
            dbmanager_address=db_manager_address,
            tls=server_tls,
        )


@serve.command("dbmanager")
@_server_options(6789)
@_db_option
def serve_dbmanager(
    host: str, port: int, metrics_port: int | None, db_url: str | None, **tls: str | None
) -> None:
    """api.v1.beta1.DBManager over the store."""
    from metrics_collector.dbmanager import serve as serve_forever

    with _serving((tls["tls_cert"], tls["tls_key"], tls["tls_client_ca"])) as server_tls:
        click.echo(f"tunery DBManager service on {host}:{port}", err=True)
        start_metrics(host, metrics_port)
        serve_forever(host=host, port=port, db_url=db_url, tls=server_tls)
