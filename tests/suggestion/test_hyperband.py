"""hyperband: Katib's bracket/rung arithmetic, promotions, waiting, the end, validation, and
the Suggestion wire (state in ``GetSuggestionsReply.algorithm``, Katib's example)."""

from __future__ import annotations

import math

import grpc
import pytest

from suggestion.algorithms.base import (
    InvalidSettingsError,
    NotReadyError,
    SpaceExhaustedError,
    SuggestRequest,
    UnsupportedSpaceError,
    parse_settings,
)
from suggestion.algorithms.hyperband import Hyperband, HyperbandSettings, s_max_of, schedule
from suggestion.service import SuggestionService
from tunery.api import api_pb2
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

from .helpers import Server, add_trial, experiment, wire

SPACE = SearchSpace(
    (
        Parameter.double("lr", 0.01, 0.05),
        Parameter.double("momentum", 0.5, 0.9),
        Parameter.integer("num-epochs", 1, 1),  # Katib's example: the range does not matter
    )
)
MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "accuracy")


def make(**settings: str) -> Hyperband:
    raw = {"resource_name": "num-epochs", "r_l": "9", "eta": "3", "random_state": "1"}
    raw.update(settings)
    return Hyperband(parse_settings(HyperbandSettings, raw, "hyperband"))


def req(trials: list[TrialResult], count: int, objective: Objective = MIN) -> SuggestRequest:
    return SuggestRequest(SPACE, objective, list(trials), count, experiment_name="hb")


def finish(trials: list[TrialResult], value, condition=TrialCondition.SUCCEEDED) -> None:  # type: ignore[no-untyped-def]
    for k, t in enumerate(trials):
        if t.is_pending:
            trials[k] = TrialResult(t.name, t.assignment, condition, value(t.assignment))


def run_all(algo: Hyperband, objective: Objective = MIN, batch: int = 100) -> list[TrialResult]:
    """Drive the whole schedule: ask for up to ``batch``, finish everything when not ready."""
    trials: list[TrialResult] = []
    while True:
        try:
            out = algo.suggest(req(trials, 1, objective))
        except NotReadyError:
            finish(trials, lambda a: a["lr"] * 100 + 1.0 / a["num-epochs"])
            continue
        except SpaceExhaustedError:
            finish(trials, lambda a: a["lr"] * 100 + 1.0 / a["num-epochs"])
            return trials
        for a in out:
            trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.RUNNING))


# -- arithmetic ---------------------------------------------------------------------------------


def test_katib_example_schedule() -> None:
    """r_l=2, eta=2 (examples/v1beta1/hp-tuning/hyperband.yaml): s_max 1; bracket 1 samples
    2 at resource 1 and promotes 1 to 2; bracket 0 samples 2 at resource 2."""
    rungs = [(r.bracket, r.index, r.size, r.resource) for r in schedule(2, 2)]
    assert rungs == [(1, 0, 2, 1), (1, 1, 1, 2), (0, 0, 2, 2)]


def test_paper_table_r81_eta3() -> None:
    """Li et al. 2018, Table 1 (R=81, eta=3): n_i and r_i per bracket."""
    by_bracket: dict[int, list[tuple[int, int]]] = {}
    for r in schedule(81, 3):
        by_bracket.setdefault(r.bracket, []).append((r.size, r.resource))
    assert by_bracket[4] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    assert by_bracket[3] == [(34, 3), (12, 9), (4, 27), (2, 81)]
    assert by_bracket[2] == [(15, 9), (5, 27), (2, 81)]
    assert by_bracket[1] == [(8, 27), (3, 81)]
    assert by_bracket[0] == [(5, 81)]


def test_s_max_tolerates_rounding() -> None:
    assert math.log(1000) / math.log(10) < 3
    assert s_max_of(1000, 10) == 3
    assert s_max_of(9, 3) == 2 and s_max_of(10, 3) == 2 and s_max_of(2, 3) == 0


# -- promotions ---------------------------------------------------------------------------------


def test_master_rung_then_wait_then_promote_the_best() -> None:
    algo = make()
    first = algo.suggest(req([], 9))
    assert [a["num-epochs"] for a in first] == [1] * 9
    assert len({(a["lr"], a["momentum"]) for a in first}) == 9
    trials = [TrialResult(f"t{i}", a, TrialCondition.RUNNING) for i, a in enumerate(first)]
    with pytest.raises(NotReadyError, match="waits for 9 running"):
        algo.suggest(req(trials, 1))
    finish(trials, lambda a: a["lr"])  # loss = lr: the three smallest lr are best
    promoted = algo.suggest(req(trials, 3))
    best = sorted(first, key=lambda a: a["lr"])[:3]
    assert [(a["lr"], a["momentum"]) for a in promoted] == [(a["lr"], a["momentum"]) for a in best]
    assert [a["num-epochs"] for a in promoted] == [3, 3, 3]


def test_maximize_promotes_the_largest() -> None:
    algo = make()
    first = algo.suggest(req([], 9, MAX))
    trials = [
        TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, a["lr"]) for i, a in enumerate(first)
    ]
    promoted = algo.suggest(req(trials, 3, MAX))
    assert {a["lr"] for a in promoted} == {
        a["lr"] for a in sorted(first, key=lambda a: -a["lr"])[:3]
    }


def test_a_rung_fills_over_several_requests_and_batches_cross_brackets() -> None:
    """The schedule does not depend on batching: one by one equals all at once."""
    one = make()
    trials: list[TrialResult] = []
    for _ in range(9):
        trials += [
            TrialResult(f"t{len(trials)}", a, TrialCondition.RUNNING)
            for a in one.suggest(req(trials, 1))
        ]
    assert [t.assignment for t in trials] == make().suggest(req([], 9))


def test_failed_and_early_stopped_trials_are_not_promoted() -> None:
    algo = make()
    first = algo.suggest(req([], 9))
    trials = [
        TrialResult(
            f"t{i}",
            a,
            [TrialCondition.FAILED, TrialCondition.EARLY_STOPPED][i % 2]
            if i < 7
            else TrialCondition.SUCCEEDED,
            a["lr"],
        )
        for i, a in enumerate(first)
    ]
    # only t7 and t8 can be promoted: rung 1 has 2 trials, then rung 2 promotes 1 of them
    promoted = algo.suggest(req(trials, 2))
    assert [a["lr"] for a in promoted] == sorted([first[7]["lr"], first[8]["lr"]])
    with pytest.raises(NotReadyError):
        algo.suggest(req(trials, 3))


def test_whole_schedule_then_exhausted() -> None:
    algo = make()
    trials = run_all(algo)
    assert len(trials) == sum(r.size for r in schedule(9, 3)) == 23
    resources = [t.assignment["num-epochs"] for t in trials]
    assert resources == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] * 2 + [9] * 3
    # rung 2 of bracket 2 is the best of rung 1 (loss falls with lr and rises with 1/epochs)
    rung1 = trials[9:12]
    assert trials[12].assignment["lr"] == min(t.assignment["lr"] for t in rung1)
    with pytest.raises(SpaceExhaustedError, match="exhausted"):
        algo.suggest(req(trials, 1))


def test_a_fresh_instance_agrees_with_a_warm_one() -> None:
    trials = run_all(make())[:15]
    assert make().suggest(req(trials, 3)) == make().suggest(req(trials, 3))


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"resource_name": ""}, "r_l and resource_name must be set."),
        ({"resource_name": "epochs"}, "value of resource_name setting must be in parameters"),
    ],
)
def test_validation_names_the_setting(settings: dict[str, str], message: str) -> None:
    algo = make(**settings)
    with pytest.raises(InvalidSettingsError, match=message):
        Hyperband.validate(SPACE, MIN, algo.settings)


@pytest.mark.parametrize("eta", ["1", "0", "-2", "2.5", "abc"])
def test_bad_eta_names_eta(eta: str) -> None:
    with pytest.raises(InvalidSettingsError, match="eta"):
        make(eta=eta)


@pytest.mark.parametrize("r_l", ["0.5", "-1", "x"])
def test_bad_r_l_names_r_l(r_l: str) -> None:
    with pytest.raises(InvalidSettingsError, match="r_l"):
        make(r_l=r_l)


def test_parallel_trial_count_must_hold_the_largest_rung() -> None:
    settings = make().settings
    Hyperband.validate_parallelism(settings, 9)
    with pytest.raises(InvalidSettingsError, match=r"must be not less than 9\."):
        Hyperband.validate_parallelism(settings, 8)


def test_a_finite_space_smaller_than_the_first_bracket_is_refused() -> None:
    space = SearchSpace(
        (Parameter.categorical("opt", ["a", "b"]), Parameter.integer("num-epochs", 1, 9))
    )
    with pytest.raises(UnsupportedSpaceError, match="samples 9 configurations"):
        Hyperband.validate(space, MIN, make().settings)


# -- the wire -----------------------------------------------------------------------------------

KATIB_EXAMPLE = (
    ("lr", api_pb2.DOUBLE, {"min": "0.01", "max": "0.05"}),
    ("momentum", api_pb2.DOUBLE, {"min": "0.5", "max": "0.9"}),
    ("num-epochs", api_pb2.INT, {"min": "1", "max": "1"}),
)


def katib_experiment(**extra: str) -> api_pb2.Experiment:
    exp = experiment(
        "hyperband",
        name="hyperband",
        params=KATIB_EXAMPLE,
        settings={"resource_name": "num-epochs", "eta": "2", "r_l": "2", **extra},
    )
    exp.spec.parallel_trial_count = 2
    return exp


def test_katib_example_over_the_service_reports_state_like_katib() -> None:
    service = SuggestionService()
    service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=katib_experiment()))
    request = api_pb2.GetSuggestionsRequest(
        experiment=katib_experiment(), current_request_number=2
    )
    reply = service.suggest(request)
    assert [wire(pa)["num-epochs"] for pa in reply.parameter_assignments] == ["1", "1"]
    state = {s.name: s.value for s in reply.algorithm.algorithm_settings}
    assert state["resource_name"] == "num-epochs"
    assert (state["eta"], state["s_max"], state["current_s"], state["current_i"]) == (
        "2",
        "1",
        "1",
        "0",
    )
    # Katib's controller merges the state into the next request's settings: accepted
    merged = katib_experiment(
        **{k: v for k, v in state.items() if k not in ("eta", "r_l", "resource_name")}
    )
    nxt = api_pb2.GetSuggestionsRequest(experiment=merged, current_request_number=1)
    for k, pa in enumerate(reply.parameter_assignments):
        add_trial(nxt, pa.assignments, api_pb2.TrialStatus.SUCCEEDED, value=str(0.5 - k / 10))
    promoted = service.suggest(nxt)
    [one] = promoted.parameter_assignments
    assert wire(one)["num-epochs"] == "2"
    assert wire(one)["lr"] == wire(reply.parameter_assignments[1])["lr"]  # the lower loss


def test_katib_validation_messages_over_the_service() -> None:
    service = SuggestionService()
    small = katib_experiment(r_l="8")  # s_max 3 -> 8 in the first rung, parallel is 2
    with pytest.raises(InvalidSettingsError, match=r"must be not less than 8\."):
        service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=small))
    exp = katib_experiment()
    del exp.spec.algorithm.algorithm_settings[0]  # resource_name
    with pytest.raises(InvalidSettingsError, match=r"r_l and resource_name must be set\."):
        service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp))


def test_over_grpc_not_ready_is_failed_precondition_and_end_is_out_of_range(
    server: Server,
) -> None:
    request = api_pb2.GetSuggestionsRequest(
        experiment=katib_experiment(), current_request_number=2
    )
    reply = server.stub.GetSuggestions(request)
    assert {s.name for s in reply.algorithm.algorithm_settings} >= {"current_s", "n", "r_l"}
    for pa in reply.parameter_assignments:
        add_trial(request, pa.assignments, api_pb2.TrialStatus.RUNNING)
    request.current_request_number = 1
    with pytest.raises(grpc.RpcError) as info:
        server.stub.GetSuggestions(request)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "waits for 2 running trial(s)" in str(info.value.details())
    for k, trial in enumerate(request.trials):
        trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="loss", value=str(k))
    for _ in range(3):  # the promotion, then bracket 0's two trials
        [pa] = server.stub.GetSuggestions(request).parameter_assignments
        add_trial(request, pa.assignments, api_pb2.TrialStatus.SUCCEEDED, value="0.1")
    assert [wire(t.spec.parameter_assignments)["num-epochs"] for t in request.trials] == [
        "1",
        "1",
        "2",
        "2",
        "2",
    ]
    with pytest.raises(grpc.RpcError) as info:
        server.stub.GetSuggestions(request)
    assert info.value.code() is grpc.StatusCode.OUT_OF_RANGE
