"""The EarlyStopping service over a store keyed by namespace: the wire names trials alone."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest

from earlystop.service import EarlyStoppingServicer
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store import AmbiguousTrialError, Store, TrialRecord
from tunery.trials import TrialCondition

sys.path.insert(0, str(Path(__file__).parent))
from test_earlystop_service import CURVES, call_error, rules_request, seed, start


def test_rules_and_set_trial_status_find_the_trials_namespace(store: Store) -> None:
    team = store.in_namespace("team-a")
    seed(team)
    servicer = EarlyStoppingServicer(store)  # bound to the default namespace
    assert [r.value for r in servicer.rules_for(rules_request(list(CURVES), ""))] == [5.0]
    assert servicer.set_trial_status("t-run") is TrialCondition.EARLY_STOPPED
    assert team.get_trial("t-run").condition is TrialCondition.EARLY_STOPPED


def test_a_trial_name_in_two_namespaces_is_refused(sqlite_store: Store) -> None:
    for namespace in ("team-a", "team-b"):
        seed(sqlite_store.in_namespace(namespace))
    with pytest.raises(AmbiguousTrialError, match="namespaces team-a, team-b"):
        EarlyStoppingServicer(sqlite_store).set_trial_status("t-run")
    sqlite_store.in_namespace("team-b").create_trial(TrialRecord("only-b", "exp", {}))
    server, channel = start(sqlite_store)
    try:
        stub = api_pb2_grpc.EarlyStoppingStub(channel)
        error = call_error(stub.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name="t-run"))
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "namespaces team-a, team-b" in (error.details() or "")
        stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="only-b"), timeout=10)
    finally:
        channel.close()
        server.stop(0)
    b = sqlite_store.in_namespace("team-b")
    assert b.get_trial("only-b").condition is TrialCondition.EARLY_STOPPED
