"""The dashboard's plotly.js: the partial bundle in ``static/`` and its content-hashed URL.

``tools/build_plotly.py`` builds ``static/plotly-partial.min.js`` (plotly.js's core and the
trace types tunery's figures use: about a third of plotly's full bundle, a seventh of its
evaluation time in Chromium) and the file ships in the package, so no npm and no CDN is
needed. :mod:`tunery.dashboard.app` serves it at :func:`plotly_url`, whose name carries the
file's hash, with an ``immutable`` one-year cache (a browser keeps it, and V8's code cache
for it, until the file changes), and at ``/vendor/plotly.min.js`` for older links;
:mod:`tunery.dashboard.pages` names :func:`plotly_url` in the pages.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_FILE = STATIC_DIR / "plotly-partial.min.js"
PLOTLY_ALIAS = "/vendor/plotly.min.js"
IMMUTABLE = "public, max-age=31536000, immutable"


def plotly_js() -> Path:
    """The partial plotly.js bundle shipped in the package."""
    return PLOTLY_FILE


@functools.cache
def plotly_url() -> str:
    """``/vendor/plotly-<16 hex digits of its SHA-256>.min.js``: a new URL for new content."""
    digest = hashlib.sha256(PLOTLY_FILE.read_bytes()).hexdigest()[:16]
    return f"/vendor/plotly-{digest}.min.js"
