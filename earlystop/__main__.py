"""``python -m earlystop``: run the EarlyStopping gRPC service (the container entry point).

Same as ``tunery serve earlystop``; see :func:`earlystop.server.serve`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from earlystop.server import DEFAULT_PORT, serve
from tunery.serving import DEFAULT_HOST


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m earlystop", description="Katib-compatible EarlyStopping gRPC service"
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 6788)")
    parser.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL of the tunery store; without it observations are read from the "
        "DBManager of --db-manager-address and SetTrialStatus is refused",
    )
    parser.add_argument(
        "--db-manager-address",
        default=os.environ.get("TUNERY_DB_MANAGER_ADDRESS") or None,
        help="host:port of the DBManager to read observations from when there is no store "
        "(env TUNERY_DB_MANAGER_ADDRESS); the address in requests is ignored",
    )
    parser.add_argument(
        "--dbmanager-timeout", type=float, default=30.0, help="seconds per GetObservationLog"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        serve(
            args.host,
            args.port,
            args.db_url,
            dbmanager_address=args.db_manager_address,
            dbmanager_timeout=args.dbmanager_timeout,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
