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
from tunery.serving import create_server, serve_forever, service_name
from tunery.store.base import Store

log = logging.getLogger(__name__)

DEFAULT_PORT = 6788
"""Katib's early-stopping port (``earlystop-api``)."""


def _build(
    address: str, store: Store | None, *, dbmanager_timeout: float, max_workers: int
) -> tuple[grpc.Server, int, EarlyStoppingServicer]:
    servicer = EarlyStoppingServicer(store, dbmanager_timeout=dbmanager_timeout)

    def register(server: grpc.Server) -> str:
        api_pb2_grpc.add_EarlyStoppingServicer_to_server(servicer, server)
        return service_name("EarlyStopping")

    probe = store.ping if store is not None else None
    server, port = create_server([register], address, max_workers=max_workers, probe=probe)
    return server, port, servicer


def create_earlystop_server(
    address: str = f"0.0.0.0:{DEFAULT_PORT}",
    store: Store | None = None,
    *,
    dbmanager_timeout: float = 30.0,
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """A not-yet-started EarlyStopping server bound to ``address`` and the port it bound.

    With ``store``, observations are read from it and SetTrialStatus writes to it; without,
    observations come from each request's DBManager and SetTrialStatus is refused.

    Raises:
        OSError: the address cannot be bound.
    """
    server, port, _ = _build(
        address, store, dbmanager_timeout=dbmanager_timeout, max_workers=max_workers
    )
    return server, port


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def serve(
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    db_url: str | None = None,
    *,
    dbmanager_timeout: float = 30.0,
) -> None:
    """Serve until SIGTERM or SIGINT (blocking), with a store when ``db_url`` is given.

    Raises:
        OSError: the port cannot be bound. StoreError: the database cannot be opened.
    """
    store: Store | None = None
    if db_url:
        from tunery.store import open_store  # the SQL store pulls in SQLAlchemy: load on use

        store = open_store(db_url)
    try:
        server, bound, servicer = _build(
            _address(host, port), store, dbmanager_timeout=dbmanager_timeout, max_workers=16
        )
        log.info(
            "EarlyStopping service listening on %s (%s)",
            _address(host, bound),
            "store" if store is not None else "observations from the DBManager of each request",
        )
        try:
            serve_forever(server)
        finally:
            servicer.close()
    finally:
        if store is not None:
            store.close()
