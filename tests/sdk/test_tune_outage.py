"""tune() with a custom Suggestion endpoint that never answers: BackendUnavailableError naming
it, after the first-contact limit (here shortened through TUNERY_OUTAGE_LIMIT)."""

from __future__ import annotations

import socket
import time

import pytest

from tunery import search, tune
from tunery.sdk import BackendUnavailableError

pytestmark = pytest.mark.usefixtures("isolated_cwd")


def objective(p: dict) -> dict:
    return {"loss": p["x"] ** 2}


def test_an_unreachable_endpoint_is_backend_unavailable(monkeypatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening
        port = sock.getsockname()[1]
        monkeypatch.setenv("TUNERY_SUGGESTION_ENDPOINTS", f"my-algo=127.0.0.1:{port}")
        monkeypatch.setenv("TUNERY_OUTAGE_LIMIT", "1")
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=f"my-algo at 127.0.0.1:{port}"):
            tune(
                objective,
                {"x": search.double(-1, 1)},
                name="unreachable",
                objective_metric_name="loss",
                algorithm_name="my-algo",
                max_trial_count=2,
                verbose=False,
            )
    assert time.monotonic() - started < 10
