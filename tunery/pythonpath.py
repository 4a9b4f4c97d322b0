"""Where this process imported tunery from, for child interpreters that must import the same.

Kernel module (standard library only). Called by the SDK when it builds a local trial's
container and by the controller's local backend when it starts a background driver: both run
``python -m ...`` of this tunery, which a source checkout needs on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import site
from collections.abc import Mapping
from pathlib import Path


def tunery_import_root() -> Path:
    """The folder holding the ``tunery`` package this process imported."""
    return Path(__file__).resolve().parent.parent


def child_pythonpath(environ: Mapping[str, str] | None = None) -> str | None:
    """PYTHONPATH for a child interpreter that must import this same tunery, or None when it
    is installed in site-packages (a plain ``python`` finds it anyway)."""
    root = tunery_import_root()
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root in installed:
        return None
    environ = os.environ if environ is None else environ
    existing = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([str(root), *[p for p in existing if p != str(root)]])
