"""The CLI's output helpers: typed JSON values, rounding, tables, condition counts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tunery.cli.output import (
    counts_text,
    number,
    rounded,
    table,
    trial_counts,
    typed_best,
    typed_parameter,
)
from tunery.trials import TrialCondition


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("0.25", 0.25), ("-1e-05", -1e-05), ("unavailable", "unavailable"), ("", "")],
)
def test_number_turns_numeric_text_into_numbers(text: str, expected: object) -> None:
    assert number(text) == expected and type(number(text)) is type(expected)


def test_non_finite_numbers_become_null() -> None:
    assert number("nan") is None and number("inf") is None and number(math.nan) is None


def test_parameters_are_typed_by_their_spec() -> None:
    assert typed_parameter("2", "int") == 2
    assert typed_parameter("2", "double") == 2.0 and isinstance(
        typed_parameter("2", "double"), float
    )
    assert typed_parameter("0.5", "discrete") == 0.5
    assert typed_parameter("1", "categorical") == "1"  # a categorical value stays text
    assert typed_parameter("adam", "categorical") == "adam"


def test_best_trial_values_become_numbers() -> None:
    spec = {"parameters": [{"name": "lr", "parameterType": "double"}]}
    best = {
        "bestTrialName": "t",
        "parameterAssignments": [{"name": "lr", "value": "0.012345678901"}],
        "observation": {"metrics": [{"name": "loss", "min": "1", "max": "2.5", "latest": "2"}]},
    }
    typed = typed_best(best, spec)
    assert typed["parameterAssignments"] == [{"name": "lr", "value": 0.012345678901}]
    assert typed["observation"]["metrics"] == [{"name": "loss", "min": 1, "max": 2.5, "latest": 2}]
    assert best["parameterAssignments"][0]["value"] == "0.012345678901"  # input untouched


def test_tables_round_to_four_significant_digits() -> None:
    assert rounded("0.15217527272575262") == "0.1522"
    assert rounded(0.0015536207093991526) == "0.001554"
    assert rounded("12") == "12" and rounded("adam") == "adam" and rounded(None) == "-"


def test_table_columns_fit_their_widest_cell() -> None:
    text = table(
        ["NAME", "N"], [["short", "1"], ["a-much-longer-name-than-the-header", "12"]], right=[1]
    )
    lines = text.splitlines()
    assert len({line.rindex(line.split()[1]) + len(line.split()[1]) for line in lines}) == 1
    assert lines[1].startswith("short ") and lines[2].startswith("a-much-longer-name")


def _trial(condition: TrialCondition) -> SimpleNamespace:
    return SimpleNamespace(condition=condition)


def test_counts_name_every_condition_that_occurs() -> None:
    trials = [_trial(TrialCondition.SUCCEEDED)] * 5 + [_trial(TrialCondition.EARLY_STOPPED)] * 5
    assert counts_text(trial_counts(trials)) == "10 (5 succeeded, 5 early stopped)"
    failed = [_trial(TrialCondition.METRICS_UNAVAILABLE)] * 2 + [_trial(TrialCondition.KILLED)]
    assert counts_text(trial_counts(failed)) == "3 (2 metrics unavailable, 1 killed)"
    assert counts_text(trial_counts([])) == "0"


def test_sorting_puts_unavailable_and_absent_values_last() -> None:
    from tunery.cli.inspection import _sort_rows

    def row(name: str, loss: object, lr: object = None) -> dict:
        values = {} if loss is None else {"loss": loss}
        return {
            "name": name,
            "condition": "Succeeded",
            "start_time": None,
            "completion_time": None,
            "values": values,
            "parameters": {"lr": lr, "opt": name[-1]},
        }

    rows = [row("a", 3.0), row("b", "unavailable"), row("c", 1), row("d", None), row("e", 2.5)]
    assert [r["name"] for r in _sort_rows(rows, "objective", "loss", False)] == list("ceabd")
    assert [r["name"] for r in _sort_rows(rows, "objective", "loss", True)] == list("aecbd")
    assert [r["name"] for r in _sort_rows(rows, "-loss", "loss", False)] == list("aecbd")
    assert [r["name"] for r in _sort_rows(rows, "-opt", "loss", False)] == list("edcba")


def test_an_unknown_sort_key_lists_each_column_once() -> None:
    from tunery.cli.app import CliError
    from tunery.cli.inspection import _sort_rows

    row = {  # tune()'s default metric is named "objective", like the sort alias
        "name": "a",
        "condition": "Succeeded",
        "start_time": None,
        "completion_time": None,
        "values": {"objective": 1.0},
        "parameters": {"x": 0.5},
    }
    with pytest.raises(CliError) as info:
        _sort_rows([row], "nope", "objective", True)
    assert info.value.message == (
        "--sort: unknown column 'nope' (known: objective, condition, end, name, start, x)"
    )
