"""Fixtures for the Kubernetes tests: a fake API server, a store, a deterministic algorithm.

- ``cluster``: :class:`fake_cluster.FakeCluster` (the honest fake API server, deploy/crds
  installed) on a local port, a fresh one per test; ``api`` a :class:`KubeApi` on it;
  ``namespace`` a fresh namespace created in it, so tests never see each other's objects.
- ``k8s_store``: the SQL store on a temporary SQLite file when ``tunery.store.open_store``
  exists, else the in-memory store of ``k8s_memstore``.
- ``suggestions``: an in-process Suggestion client over :class:`ScriptedAlgorithm`, which
  hands out the values of a list in order (so tests know which trial is best).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_cluster import FakeCluster
from k8s_memstore import MemoryStore

from controller.clients import InProcessSuggestionClient
from controller.runners.kubernetes import KubeApi
from tunery.api import api_pb2
from tunery.store.base import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster() as fake:
        yield fake


@pytest.fixture()
def api(cluster: FakeCluster) -> KubeApi:
    return KubeApi(cluster.api_client(), timeout=10)


@pytest.fixture()
def namespace(api: KubeApi) -> str:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture()
def k8s_store(tmp_path: Path) -> Iterator[Store]:
    try:
        from tunery.store import open_store  # type: ignore[attr-defined]
    except ImportError:
        store: Store = MemoryStore()
    else:
        store = open_store(f"sqlite:///{tmp_path / 'tunery.db'}")
    yield store
    store.close()


class ScriptedAlgorithm:
    """A Katib Suggestion servicer returning ``values`` of the first parameter in order (the
    others at their minimum); it reports the end of the search when the list runs out."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.requests: list[api_pb2.GetSuggestionsRequest] = []

    def ValidateAlgorithmSettings(self, request, context):
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        self.requests.append(request)
        params = request.experiment.spec.parameter_specs.parameters
        reply = api_pb2.GetSuggestionsReply()
        start = len(request.trials)
        for k in range(request.current_request_number):
            if start + k >= len(self.values):
                break
            assignments = [
                api_pb2.ParameterAssignment(name=params[0].name, value=self.values[start + k])
            ]
            assignments += [
                api_pb2.ParameterAssignment(name=p.name, value=p.feasible_space.min)
                for p in params[1:]
            ]
            reply.parameter_assignments.add(assignments=assignments)
        return reply


@pytest.fixture()
def algorithm() -> ScriptedAlgorithm:
    return ScriptedAlgorithm(["0.01", "0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08"])


@pytest.fixture()
def suggestions(algorithm: ScriptedAlgorithm):  # type: ignore[no-untyped-def]
    return lambda _name: InProcessSuggestionClient(algorithm)
