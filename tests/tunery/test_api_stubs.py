"""The committed gRPC stubs match proto/api.proto, and the proto keeps Katib's wire contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tunery.api import api_pb2

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_regenerated_unchanged(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) is needed to regenerate")
    written = _load_generator().generate(tmp_path)
    assert {p.name for p in written} == {
        "api_pb2.py",
        "api_pb2.pyi",
        "api_pb2_grpc.py",
        "api_pb2_grpc.pyi",
    }
    for fresh in written:
        committed = ROOT / "tunery" / "api" / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run python proto/generate.py"
        )


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("ExperimentSpec", "parameter_specs", 1),
        ("ExperimentSpec", "nas_config", 7),
        ("FeasibleSpace", "distribution", 5),
        ("ObjectiveSpec", "additional_metric_names", 4),
        ("TrialSpec", "parameter_assignments", 3),
        ("TrialSpec", "labels", 4),
        ("TrialStatus", "observation", 4),
        ("GetSuggestionsRequest", "current_request_number", 4),
        ("GetSuggestionsRequest", "total_request_number", 5),
        ("GetSuggestionsReply", "early_stopping_rules", 3),
        ("GetEarlyStoppingRulesRequest", "db_manager_address", 3),
        ("EarlyStoppingRule", "start_step", 4),
        ("MetricLog", "metric", 2),
        ("GetObservationLogRequest", "end_time", 4),
    ],
)
def test_katib_field_numbers(message: str, field: str, number: int) -> None:
    assert api_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == number


def test_katib_services_and_enums() -> None:
    services = {
        s.full_name: [m.name for m in s.methods]
        for s in api_pb2.DESCRIPTOR.services_by_name.values()
    }
    assert services == {
        "api.v1.beta1.DBManager": [
            "ReportObservationLog",
            "GetObservationLog",
            "DeleteObservationLog",
        ],
        "api.v1.beta1.Suggestion": ["GetSuggestions", "ValidateAlgorithmSettings"],
        "api.v1.beta1.EarlyStopping": [
            "GetEarlyStoppingRules",
            "SetTrialStatus",
            "ValidateEarlyStoppingSettings",
        ],
    }
    assert api_pb2.TrialStatus.EARLYSTOPPED == 6 and api_pb2.TrialStatus.UNKNOWN == 7
    assert api_pb2.LOG_NORMAL == 4 and api_pb2.CATEGORICAL == 4 and api_pb2.GREATER == 3
    assert 3 not in {f.number for f in api_pb2.GetSuggestionsRequest.DESCRIPTOR.fields}, (
        "field 3 (request_number) was removed from Katib's GetSuggestionsRequest"
    )
