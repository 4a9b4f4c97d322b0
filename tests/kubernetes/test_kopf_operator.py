"""The kopf wiring: which handlers the operator registers and how they call the logic.

kopf watching the fake API server end to end, with ``tunery operator`` as its own process, is
tested in ``test_kopf_e2e.py``.
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kubernetes import client as k8s_client

from controller.operator import OperatorSettings
from controller.operator.app import build_registry, connection_info
from controller.runners.kubernetes import KubeUnavailableError


class RecordingOperator:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def _record(self, what: str, body: dict[str, Any]) -> None:
        if self.fail:
            raise KubeUnavailableError(503, "ServiceUnavailable", "down")
        self.calls.append((what, body["metadata"]["name"]))

    def admit(self, body: dict[str, Any]) -> bool:
        self._record("admit", body)
        return True

    def reconcile(self, body: dict[str, Any]) -> None:
        self._record("reconcile", body)

    def delete(self, body: dict[str, Any]) -> None:
        self._record("delete", body)

    def close(self) -> None:
        self.calls.append(("close", ""))


def handlers(registry: kopf.OperatorRegistry) -> dict[str, Any]:
    found: dict[str, list[Any]] = {}
    for handler in registry._changing.get_all_handlers():
        kind = "resume" if handler.initial else str(handler.reason)
        found.setdefault(kind, []).append(handler)
    for handler in registry._spawning.get_all_handlers():
        found.setdefault("timer", []).append(handler)
    return found


def test_experiment_handlers_are_registered_and_call_the_operator() -> None:
    operator = RecordingOperator()
    settings = OperatorSettings(interval_seconds=2.5)
    registry = build_registry(operator, settings, k8s_client.Configuration())  # type: ignore[arg-type]
    found = handlers(registry)
    assert {"create", "resume", "update", "delete", "timer"} <= set(found)
    ids = [h.id for group in found.values() for h in group]
    assert {i.split(".")[-1].split("/")[0] for i in ids} == {"admit", "reconcile", "delete"}
    (timer,) = found["timer"]
    assert timer.interval == 2.5
    assert timer.selector.plural == "experiments" and timer.selector.group == "kubeflow.org"
    body = {"metadata": {"name": "e1"}}
    timer.fn(body=body)
    for group in found.values():
        for handler in group:
            if handler is not timer:
                handler.fn(body=body)
    assert ("reconcile", "e1") in operator.calls
    assert {"admit", "delete"} <= {what for what, _ in operator.calls}


def test_transient_failures_become_kopf_temporary_errors() -> None:
    registry = build_registry(
        RecordingOperator(fail=True),
        OperatorSettings(),
        k8s_client.Configuration(),  # type: ignore[arg-type]
    )
    (timer,) = handlers(registry)["timer"]
    with pytest.raises(kopf.TemporaryError):
        timer.fn(body={"metadata": {"name": "e1"}})


def test_connection_info_carries_the_client_credentials() -> None:
    config = k8s_client.Configuration()
    config.host = "https://10.0.0.1:443"
    config.api_key = {"authorization": "Bearer abc"}
    config.verify_ssl = True
    info = connection_info(config)
    assert (info.server, info.scheme, info.token, info.insecure) == (
        "https://10.0.0.1:443", "Bearer", "abc", False,
    )  # fmt: skip
