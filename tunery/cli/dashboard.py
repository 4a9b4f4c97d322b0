"""``tunery dashboard``: serve the web dashboard over a store.

Part of the CLI; registers its command on :data:`tunery.cli.app.main`. Builds the app with
:func:`tunery.dashboard.create_app` and serves it with uvicorn until Ctrl-C. Exit codes: 2 for
a refused binding (another host without a token) or a bad ``--db``; 3 when the database is
unavailable, the port is taken or the ``dashboard`` extra is not installed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from tunery.cli.app import (
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    CliError,
    _db_option,
    _errors,
    _namespace_option,
    _open_store,
    main,
    store_name,
)

TOKEN_ENV = "TUNERY_DASHBOARD_TOKEN"


@main.command()
@_db_option
@_namespace_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Enable stop, raise budget and delete (off: the dashboard is read-only).",
)
@click.option(
    "--workdir",
    default=".tunery",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The work directory of `tunery run`: trial output is read from its logs folder only.",
)
def dashboard(
    db_url: str | None,
    namespace: str | None,
    host: str,
    port: int,
    allow_actions: bool,
    workdir: Path,
) -> None:
    """Serve the web dashboard (experiments, plots, trials, logs) and its JSON API.

    Bound to 127.0.0.1 by default. Binding another address needs an access token in
    $TUNERY_DASHBOARD_TOKEN; open the printed URL with ?token=<token> once.
    """
    try:
        import uvicorn

        from tunery.dashboard import DashboardSecurityError, DashboardSettings, create_app
        from tunery.dashboard.security import RedactTokenFilter
    except ModuleNotFoundError as exc:
        raise CliError(
            f"the dashboard needs {exc.name}: pip install 'tunery[dashboard]'", EXIT_UNAVAILABLE
        ) from None
    token = os.environ.get(TOKEN_ENV) or None
    settings = DashboardSettings(
        host=host, db_url=db_url, token=token, allow_actions=allow_actions, workdir=workdir
    )
    with _errors(db_url, namespace):
        store = _open_store(db_url, namespace=namespace)
        try:
            app = create_app(store, settings)
        except DashboardSecurityError as exc:
            store.close()
            raise CliError(str(exc), EXIT_INVALID) from None
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=True)
        logging.getLogger("uvicorn.access").addFilter(RedactTokenFilter())
        shown = f"[{host}]" if ":" in host else host
        mode = "actions enabled" if allow_actions else "read-only"
        where = store_name(db_url) + (f", namespace {namespace}" if namespace else "")
        click.echo(f"tunery dashboard on http://{shown}:{port}/ ({mode}; store {where})", err=True)
        try:
            server = uvicorn.Server(config)
            server.run()
        finally:
            store.close()
        if not server.started:
            raise CliError(f"could not serve on {host}:{port} (see above)", EXIT_UNAVAILABLE)
