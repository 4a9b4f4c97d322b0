"""Developer command line for the store migrations: Alembic's commands, tunery's config.

``python -m tunery.store.migrations [--url URL] <alembic command> ...``, e.g.
``revision --autogenerate -m "add column"``, ``upgrade head``, ``current``, ``history``.
The URL defaults as for ``open_store`` (``$TUNERY_DB_URL``, then ``.tunery/tunery.db``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alembic.config import CommandLine

from tunery.store.migrations import alembic_config


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    url = None
    if args[:1] == ["--url"] and len(args) >= 2:
        url, args = args[1], args[2:]
    cli = CommandLine(prog="python -m tunery.store.migrations")
    options = cli.parser.parse_args(args)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = alembic_config(url)
    config.cmd_opts = options
    cli.run_cmd(config, options)


if __name__ == "__main__":
    main()
