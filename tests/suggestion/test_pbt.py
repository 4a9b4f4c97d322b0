"""pbt: settings, generation bookkeeping, exploit and explore, retries, and the wire format
(trial names and labels in the reply, labels read back from the request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suggestion.algorithms.base import (
    InvalidRequestError,
    InvalidSettingsError,
    SuggestRequest,
    parse_settings,
)
from suggestion.algorithms.pbt import (
    BASE_LABEL,
    GENERATION_LABEL,
    PARENT_LABEL,
    RETRY_LABEL,
    Pbt,
    PbtSettings,
    perturb_value,
)
from suggestion.service import SuggestionService
from tunery.api import api_pb2
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

from .helpers import experiment

SPACE = SearchSpace(
    (
        Parameter.double("lr", 0.0001, 0.02, step=0.0001),
        Parameter.integer("width", 8, 64),
        Parameter.categorical("opt", ["sgd", "adam", "rmsprop"]),
    )
)
MAX = Objective(ObjectiveType.MAXIMIZE, "acc")
MIN = Objective(ObjectiveType.MINIMIZE, "loss")
REQUIRED = {"suggestion_trial_dir": "/ckpt", "n_population": "5", "truncation_threshold": "0.2"}


def make(**settings: str) -> Pbt:
    return Pbt(parse_settings(PbtSettings, {**REQUIRED, "random_state": "1", **settings}, "pbt"))


def ask(algo: Pbt, trials: list[TrialResult], count: int, objective: Objective = MAX) -> list:
    return algo.suggest_trials(SuggestRequest(SPACE, objective, trials, count, "exp"))


def done(suggested, value: float | None, condition=TrialCondition.SUCCEEDED) -> TrialResult:
    return TrialResult(
        suggested.name, suggested.assignment, condition, value, labels=suggested.labels
    )


def generation(labels) -> int:
    return int(labels[GENERATION_LABEL])


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_population": "4"}, r"Param\(n_population\) should be >= 5"),
        ({"truncation_threshold": "1.5"}, r"Param\(truncation_threshold\) should be between 0"),
        ({"resample_probability": "-0.1"}, r"Param\(resample_probability\) should be null"),
        ({"suggestion_trial_dir": "ckpt"}, "should be an absolute path, got 'ckpt'"),
        ({"n_population": "many"}, r"failed to validate n_population\(many\)"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        parse_settings(PbtSettings, {**REQUIRED, **settings}, "pbt")


def test_katib_required_settings_are_required() -> None:
    parsed = parse_settings(PbtSettings, {"n_population": "5"}, "pbt")
    with pytest.raises(
        InvalidSettingsError,
        match="Required params missing: suggestion_trial_dir, truncation_threshold",
    ):
        Pbt.validate(SPACE, MAX, parsed)


# -- generations --------------------------------------------------------------------------------


def test_generation_zero_is_the_population_named_and_labelled() -> None:
    out = ask(make(), [], 5)
    assert [generation(s.labels) for s in out] == [0] * 5
    assert all(PARENT_LABEL not in s.labels for s in out)
    assert len({s.name for s in out}) == 5
    assert all(s.name.startswith("exp-") and len(s.name) == len("exp-") + 8 for s in out)
    assert all(SPACE.contains(s.assignment) for s in out)


def test_a_slot_freed_before_the_population_is_scored_gets_another_member() -> None:
    algo = make()
    first = ask(algo, [], 5)
    trials = [done(s, float(i)) for i, s in enumerate(first[:3])] + [
        done(s, None, TrialCondition.RUNNING) for s in first[3:]
    ]
    [extra] = ask(algo, trials, 1)
    assert generation(extra.labels) == 0  # as in Katib: no slot waits for the stragglers


def test_the_next_generation_continues_the_previous_ones_checkpoints() -> None:
    algo = make()
    first = ask(algo, [], 5)
    trials = [done(s, float(i)) for i, s in enumerate(first)]  # first[4] is best
    children = ask(algo, trials, 5)
    names = {s.name: s for s in first}
    assert [generation(c.labels) for c in children] == [1] * 5
    assert {c.labels[BASE_LABEL] for c in children} == set(names)  # each member once
    for child in children:
        parent = names[child.labels[PARENT_LABEL]]
        base = names[child.labels[BASE_LABEL]]
        if base is first[0]:  # the bottom 20 %: exploit the top member's checkpoint and values
            assert parent is first[4]
            assert child.assignment == first[4].assignment
        else:  # explore: its own checkpoint, perturbed values
            assert parent is base
            assert child.assignment != base.assignment
    # the generation after that starts once generation 1 is scored
    grandchildren = ask(algo, trials + [done(c, 10.0 + i) for i, c in enumerate(children)], 2)
    assert [generation(g.labels) for g in grandchildren] == [2, 2]
    assert {g.labels[PARENT_LABEL] for g in grandchildren} <= {c.name for c in children}


def test_minimize_exploits_the_lowest_value() -> None:
    algo = make()
    first = ask(algo, [], 5, MIN)
    trials = [done(s, float(i)) for i, s in enumerate(first)]  # first[0] is best
    children = ask(algo, trials, 5, MIN)
    exploit = [c for c in children if c.labels[BASE_LABEL] == first[4].name]
    assert [c.labels[PARENT_LABEL] for c in exploit] == [first[0].name]


def test_one_request_equals_several_and_a_fresh_instance_agrees() -> None:
    """Stateless: the labels sent back are the whole state."""
    warm = make()
    trials: list[TrialResult] = []
    for step in range(6):
        batch = ask(warm, trials, 3)
        assert ask(make(), trials, 3) == batch
        trials += [done(s, float(step * 3 + i)) for i, s in enumerate(batch)]
    assert max(generation(t.labels) for t in trials) >= 2


def test_failed_and_killed_members_are_requeued_once() -> None:
    algo = make()
    first = ask(algo, [], 5)
    trials = [done(first[0], None, TrialCondition.FAILED)] + [
        done(s, None, TrialCondition.RUNNING) for s in first[1:]
    ]
    [retry, fresh] = ask(algo, trials, 2)
    assert retry.assignment == first[0].assignment
    assert retry.labels[RETRY_LABEL] == first[0].name and generation(retry.labels) == 0
    assert RETRY_LABEL not in fresh.labels
    [again] = ask(algo, [*trials, done(retry, None, TrialCondition.RUNNING)], 1)
    assert RETRY_LABEL not in again.labels  # the failure was requeued already


def test_resample_probability_redraws_instead_of_perturbing() -> None:
    algo = make(resample_probability="1", truncation_threshold="0")
    first = ask(algo, [], 5)
    children = ask(algo, [done(s, 1.0 + i) for i, s in enumerate(first)], 5)
    assert all(c.labels[PARENT_LABEL] == c.labels[BASE_LABEL] for c in children)
    keep = make(resample_probability="0", truncation_threshold="0")
    same = ask(keep, [done(s, 1.0 + i) for i, s in enumerate(first)], 5)
    by_name = {s.name: s.assignment for s in first}
    assert all(c.assignment == by_name[c.labels[BASE_LABEL]] for c in same)


def test_perturbation_moves_by_katibs_factors_and_stays_feasible() -> None:
    rng = np.random.default_rng(0)
    lr, width, opt = SPACE.parameters
    for _ in range(50):
        assert perturb_value(lr, 0.01, rng) in (0.008, 0.012)
        assert perturb_value(width, 10, rng) in (8, 12)
        assert perturb_value(width, 64, rng) in (51, 64)
        assert perturb_value(opt, "sgd", rng) in ("adam", "rmsprop")  # neighbours, wrapping
    assert perturb_value(Parameter.integer("n", 1, 5), 1, np.random.default_rng(1)) in (1, 2)
    assert {perturb_value(width, 8, np.random.default_rng(s)) for s in range(20)} == {8, 10}


# -- over the Suggestion API --------------------------------------------------------------------


def test_names_and_labels_travel_over_the_wire_and_come_back() -> None:
    params = (("lr", api_pb2.DOUBLE, {"min": "0.001", "max": "0.1", "step": "0.001"}),)
    exp = experiment("pbt", params=params, settings={"random_state": "4"}, metric="acc")
    exp.spec.objective.type = api_pb2.MAXIMIZE
    service = SuggestionService()
    req = api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=5)
    reply = service.suggest(req)
    for i, pa in enumerate(reply.parameter_assignments):
        assert pa.trial_name.startswith("exp-") and pa.labels[GENERATION_LABEL] == "0"
        trial = req.trials.add(name=pa.trial_name)
        trial.spec.parameter_assignments.assignments.extend(pa.assignments)
        trial.spec.labels.update(pa.labels)
        trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="acc", value=str(i))
    req.current_request_number = 5
    wire = service.suggest_wire(req.SerializeToString())
    assert wire == SuggestionService().suggest(req)  # a restarted server answers the same
    names = {t.name for t in req.trials}
    for pa in wire.parameter_assignments:
        assert pa.labels[GENERATION_LABEL] == "1" and pa.labels[PARENT_LABEL] in names


# -- Katib's controller: the service prepares the folders (--katib-data-dir) --------------------


def _exp_with_trials(req: api_pb2.GetSuggestionsRequest, reply, values: list[float]) -> None:
    for pa, value in zip(reply.parameter_assignments, values, strict=True):
        trial = req.trials.add(name=pa.trial_name)
        trial.spec.parameter_assignments.assignments.extend(pa.assignments)
        trial.spec.labels.update(pa.labels)
        trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="loss", value=str(value))


def test_with_a_katib_data_dir_the_service_copies_parents_folders(tmp_path: Path) -> None:
    params = (("lr", api_pb2.DOUBLE, {"min": "0.001", "max": "0.1", "step": "0.001"}),)
    exp = experiment("pbt", name="kexp", params=params, settings={"random_state": "4"})
    service = SuggestionService(katib_data_dir=tmp_path)
    req = api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=5)
    first = service.suggest(req)
    for pa in first.parameter_assignments:
        folder = tmp_path / "kexp" / pa.trial_name
        assert folder.is_dir() and not any(folder.iterdir())
        (folder / "ckpt").write_text(pa.trial_name)  # what the trial would save
    _exp_with_trials(req, first, [1.0, 2.0, 3.0, 4.0, 5.0])
    second = service.suggest(req)
    for pa in second.parameter_assignments:
        parent = pa.labels[PARENT_LABEL]
        assert (tmp_path / "kexp" / pa.trial_name / "ckpt").read_text() == parent


def test_the_data_dir_refuses_names_that_leave_it(tmp_path: Path) -> None:
    params = (("lr", api_pb2.DOUBLE, {"min": "0.001", "max": "0.1", "step": "0.001"}),)
    exp = experiment("pbt", name="kexp", params=params, settings={"random_state": "4"})
    service = SuggestionService(katib_data_dir=tmp_path / "data")
    req = api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=5)
    reply = service.suggest(req)
    for pa in reply.parameter_assignments:
        pa.trial_name = "../../" + pa.trial_name  # a client's trial names reach the parent label
    _exp_with_trials(req, reply, [1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(InvalidRequestError, match="is not a Kubernetes object name"):
        service.suggest(req)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
