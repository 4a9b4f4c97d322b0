"""The web dashboard: experiments, plots, trial tables and logs over a tunery store.

Public face (``tunery dashboard``; :func:`create_app` for ASGI servers and tests). Modules:
``app`` (the ASGI app, access control, error mapping), ``api`` (the JSON API under ``/api``),
``pages`` (the HTML pages), ``cache`` (snapshots shared by requests), ``security`` (token,
host and log-path rules), ``static/`` (the pages' JavaScript and CSS). The data and figures
come from :mod:`tunery.visualization`. Needs ``pip install 'tunery[dashboard]'``.
"""

from __future__ import annotations

from tunery.dashboard.app import DashboardSettings, create_app
from tunery.dashboard.security import DashboardSecurityError

__all__ = ["DashboardSecurityError", "DashboardSettings", "create_app"]
