"""``python -m tunery.cli``: the ``tunery`` command (background drivers start it this way)."""

from tunery.cli import main

main()
