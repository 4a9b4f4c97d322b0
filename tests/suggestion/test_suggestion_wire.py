"""suggestion.wire: decoding only what changed gives exactly what a full parse gives."""

from __future__ import annotations

import random

import pytest

from suggestion.algorithms.base import InvalidRequestError
from suggestion.convert import TrialConverter, experiment_from_proto
from suggestion.service import SuggestionService
from suggestion.wire import RequestDecoder, WireFormatError, experiment_bytes, scan_fields
from tunery.api import api_pb2

from .helpers import add_trial, experiment

STATES = [
    api_pb2.TrialStatus.CREATED,
    api_pb2.TrialStatus.RUNNING,
    api_pb2.TrialStatus.SUCCEEDED,
    api_pb2.TrialStatus.FAILED,
    api_pb2.TrialStatus.EARLYSTOPPED,
    api_pb2.TrialStatus.KILLED,
]


def new_request(count: int = 2) -> api_pb2.GetSuggestionsRequest:
    return api_pb2.GetSuggestionsRequest(
        experiment=experiment("random"), current_request_number=count
    )


def random_trial(req: api_pb2.GetSuggestionsRequest, rng: random.Random, name: str) -> None:
    values = {
        "lr": repr(rng.uniform(1e-4, 0.1)),
        "layers": str(rng.randint(1, 8)),
        "opt": rng.choice(["sgd", "adam", "rmsprop"]),
    }
    state = rng.choice(STATES)
    add_trial(req, values, state, repr(rng.random()) if rng.random() < 0.8 else None, name=name)


def mutate(req: api_pb2.GetSuggestionsRequest, rng: random.Random, step: int) -> None:
    action = rng.random()
    if action < 0.5 or len(req.trials) < 3:
        for i in range(rng.randint(1, 4)):
            random_trial(req, rng, f"s{step}-{i}")
    elif action < 0.75:  # a trial changes state (and maybe gets its value)
        trial = rng.choice(list(req.trials))
        trial.status.condition = rng.choice(STATES)
        if not trial.status.observation.metrics:
            trial.status.observation.metrics.add(name="loss", value="0.5")
    elif action < 0.85:
        del req.trials[rng.randrange(len(req.trials))]
    elif action < 0.95:  # reorder
        rest = list(req.trials)
        rng.shuffle(rest)
        copies = [api_pb2.Trial() for _ in rest]
        for c, t in zip(copies, rest, strict=True):
            c.CopyFrom(t)
        del req.trials[:]
        req.trials.extend(copies)
    else:
        req.current_request_number = rng.randint(0, 5)


def full(req: api_pb2.GetSuggestionsRequest) -> list[tuple[object, ...]]:
    view = experiment_from_proto(req.experiment)
    trials = TrialConverter(view.space, "loss").convert(req.trials)
    return [(t.name, t.assignment, t.condition, t.value) for t in trials]


@pytest.mark.parametrize("seed", range(5))
def test_incremental_decoding_equals_a_full_parse(seed: int) -> None:
    rng = random.Random(seed)
    req = new_request()
    view = experiment_from_proto(req.experiment)
    decoder = RequestDecoder(TrialConverter(view.space, "loss"))
    reused = 0
    for step in range(60):
        mutate(req, rng, step)
        decoded = decoder.decode(req.SerializeToString())
        assert [(t.name, t.assignment, t.condition, t.value) for t in decoded.trials] == full(req)
        assert decoded.current_request_number == req.current_request_number
        reused += decoded.reused
    assert reused > 0


def test_unchanged_trials_are_the_same_objects() -> None:
    req = new_request()
    rng = random.Random(1)
    for i in range(10):
        random_trial(req, rng, f"t{i}")
    view = experiment_from_proto(req.experiment)
    decoder = RequestDecoder(TrialConverter(view.space, "loss"))
    first = decoder.decode(req.SerializeToString()).trials
    random_trial(req, rng, "t10")
    second = decoder.decode(req.SerializeToString())
    assert second.reused == 10
    assert all(a is b for a, b in zip(first, second.trials[:10], strict=True))


def test_scan_fields_and_experiment_bytes() -> None:
    req = new_request(3)
    add_trial(req, {"lr": "0.01", "layers": "2", "opt": "sgd"}, value="1")
    data = req.SerializeToString()
    fields = scan_fields(data)
    assert [f[0] for f in fields] == [1, 2, 4]
    assert experiment_bytes(data) == req.experiment.SerializeToString()
    with pytest.raises(WireFormatError):
        experiment_bytes(
            api_pb2.GetSuggestionsRequest(current_request_number=1).SerializeToString()
        )
    with pytest.raises(WireFormatError, match="truncated"):
        scan_fields(data[:-1] + b"\x12\x05ab")


def test_unusual_layouts_are_parsed_in_full() -> None:
    req = new_request(2)
    add_trial(req, {"lr": "0.01", "layers": "2", "opt": "sgd"}, value="1")
    service = SuggestionService()
    expected = SuggestionService().suggest(req)
    trials_first = b"".join(
        f.SerializeToString()
        for f in [
            api_pb2.GetSuggestionsRequest(trials=req.trials),
            api_pb2.GetSuggestionsRequest(experiment=req.experiment, current_request_number=2),
        ]
    )
    assert service.suggest_wire(trials_first) == expected
    # a second experiment field merges into the first, as protobuf does
    patch = api_pb2.GetSuggestionsRequest(experiment=api_pb2.Experiment(name="exp"))
    doubled = req.SerializeToString() + patch.SerializeToString()
    assert service.suggest_wire(doubled) == expected
    with pytest.raises(InvalidRequestError, match="malformed GetSuggestionsRequest"):
        service.suggest_wire(req.SerializeToString()[:-3])
