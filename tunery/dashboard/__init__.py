"""The web dashboard: experiments, plots, trial tables and logs over a tunery store.

Public face (``tunery dashboard``; :func:`create_app` for ASGI servers and tests). Modules:
``app`` (the ASGI app, access control, error mapping), ``api`` (the JSON API under ``/api``),
``pages`` (the HTML pages), ``cache`` (snapshots shared by requests), ``security`` (token,
host and log-path rules), ``assets`` (the partial plotly.js bundle and its content-hashed URL),
``worker`` (the importance plot's forest fitted in a worker process), ``static/`` (the pages'
JavaScript and CSS, and plotly.js). The data and figures
come from :mod:`tunery.visualization`. Needs ``pip install 'tunery[dashboard]'``.
"""

from __future__ import annotations

from tunery.dashboard.app import DashboardSettings, create_app
from tunery.dashboard.security import DashboardSecurityError

__all__ = ["DashboardSecurityError", "DashboardSettings", "create_app"]
