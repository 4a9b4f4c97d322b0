"""Start the EarlyStopping gRPC service: ``tunery serve earlystop`` and ``python -m earlystop``.

:func:`create_earlystop_server` builds a server (health and reflection included, port 0 for
tests) without starting it; :func:`serve` runs one until SIGTERM/SIGINT, then stops it
gracefully and closes its store and DBManager channels.
"""

from __future__ import annotations

import logging

import grpc

from earlystop.service import EarlyStoppingServicer
from tunery.api import api_pb2_grpc
from tunery.serving import DEFAULT_HOST, address, create_server, serve_forever, service_name
from tunery.store.base import Store
from tunery.tls import ServerTls

log = logging.getLogger(__name__)

DEFAULT_PORT = 6788
"""Katib's early-stopping port (``earlystop-api``)."""


def _build(
    bind: str,
    store: Store | None,
    *,
    dbmanager_address: str | None,
    dbmanager_timeout: float,
    max_workers: int,
    tls: ServerTls | None,
) -> tuple[grpc.Server, int, EarlyStoppingServicer]:
    servicer = EarlyStoppingServicer(
        store, dbmanager_address=dbmanager_address, dbmanager_timeout=dbmanager_timeout
    )

    def register(server: grpc.Server) -> str:
        api_pb2_grpc.add_EarlyStoppingServicer_to_server(servicer, server)
        return service_name("EarlyStopping")

    probe = store.ping if store is not None else None
    try:
        server, port = create_server(
            [register], bind, max_workers=max_workers, probe=probe, tls=tls
        )
    except BaseException:
        servicer.close()
        raise
    return server, port, servicer


def create_earlystop_server(
    bind: str = f"{DEFAULT_HOST}:{DEFAULT_PORT}",
    store: Store | None = None,
    *,
    dbmanager_address: str | None = None,
    dbmanager_timeout: float = 30.0,
    max_workers: int = 16,
    tls: ServerTls | None = None,
) -> tuple[grpc.Server, int]:
    """A not-yet-started EarlyStopping server bound to ``bind`` and the port it bound.

    With ``store``, observations are read from it and SetTrialStatus writes to it; without,
    observations come from the DBManager at ``dbmanager_address`` (never from an address a
    request names) and SetTrialStatus is refused.

    Raises:
        OSError: the address cannot be bound. InvalidSettingsError: a malformed
        ``dbmanager_address``. TlsError: a TLS file cannot be read.
    """
    server, port, _ = _build(
        bind,
        store,
        dbmanager_address=dbmanager_address,
        dbmanager_timeout=dbmanager_timeout,
        max_workers=max_workers,
        tls=tls,
    )
    return server, port


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db_url: str | None = None,
    *,
    dbmanager_address: str | None = None,
    dbmanager_timeout: float = 30.0,
    tls: ServerTls | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (blocking), with a store when ``db_url`` is given, else
    reading observations from the DBManager at ``dbmanager_address``.

    Raises:
        OSError: the port cannot be bound. StoreError: the database cannot be opened.
        InvalidSettingsError: a malformed ``dbmanager_address``. TlsError: a TLS file.
    """
    store: Store | None = None
    if db_url:
        from tunery.store import open_store  # the SQL store pulls in SQLAlchemy: load on use

        store = open_store(db_url)
    try:
        server, bound, servicer = _build(
            address(host, port),
            store,
            dbmanager_address=dbmanager_address,
            dbmanager_timeout=dbmanager_timeout,
            max_workers=16,
            tls=tls,
        )
        if store is not None:
            source = "store"
        elif dbmanager_address:
            source = f"observations from the DBManager at {dbmanager_address}"
        else:
            source = "no observation source: rules need a database URL or --db-manager-address"
        log.info(
            "EarlyStopping service listening on %s%s (%s)",
            address(host, bound),
            " with TLS" if tls is not None else "",
            source,
        )
        try:
            serve_forever(server)
        finally:
            servicer.close()
    finally:
        if store is not None:
            store.close()
