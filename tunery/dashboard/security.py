"""Who may use the dashboard, and which files it may read.

Used by :mod:`tunery.dashboard.app` (the middleware) and :mod:`tunery.dashboard.api` (trial
logs). Rules:

- Bound to a loopback address, no token is needed, but requests must name a loopback host
  (``Host: 127.0.0.1:8080`` / ``localhost``), so a web page on another site cannot reach the
  dashboard through DNS rebinding.
- Bound elsewhere, an access token is required (:func:`check_binding`); a request carries it
  as ``Authorization: Bearer <token>``, as the ``tunery_token`` cookie, or once as
  ``?token=`` on a page, which sets the cookie and redirects to the same URL without it.
- Actions (stop, budget, delete) also need the ``X-Tunery-Action: 1`` header, which a
  cross-site form cannot send.
- A trial's log is read only when its real path (symlinks resolved) is inside the logs folder.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from pathlib import Path

TOKEN_COOKIE = "tunery_token"
TOKEN_QUERY = "token"
ACTION_HEADER = "x-tunery-action"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class DashboardSecurityError(ValueError):
    """A configuration the dashboard refuses to serve with (the CLI exits 2)."""


class LogOutsideFolderError(PermissionError):
    """A trial's log path points outside the logs folder."""


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to bind a non-loopback address without an access token."""
    if token is not None and len(token) < 16:
        raise DashboardSecurityError(
            "the access token is too short: use at least 16 characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not is_loopback(host) and not token:
        raise DashboardSecurityError(
            f"--host {host} is reachable from other machines: set an access token in "
            "TUNERY_DASHBOARD_TOKEN (at least 16 characters), or bind 127.0.0.1"
        )


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def host_is_loopback(host_header: str | None) -> bool:
    """Whether a ``Host`` header names a loopback host (port ignored)."""
    if not host_header:
        return False
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host_header.startswith("["):
        host = host_header[1:].split("]", 1)[0]
    return host in LOOPBACK_HOSTS or is_loopback(host)


def log_file(path: str, logs_dir: Path) -> Path:
    """The trial log at ``path`` if it lies inside ``logs_dir`` (both resolved)."""
    root = logs_dir.resolve()
    real = Path(path).resolve()
    if not real.is_relative_to(root):
        raise LogOutsideFolderError(f"the trial's log {path} is outside the logs folder {root}")
    return real


_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*")


class RedactTokenFilter(logging.Filter):
    """Hides ``token=`` query values in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True
