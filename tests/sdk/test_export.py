"""Trials as a table: TuneResult.to_dataframe, Client.trials_dataframe (pandas, the optional
``tunery[pandas]`` extra) and the HTML Jupyter shows for a result (issue 15)."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

from tunery import Client, search, tune
from tunery.sdk import MissingDependencyError, TrialInfo, TuneResult
from tunery.trials import TrialCondition

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _result() -> TuneResult:
    ok = TrialInfo(
        name="t-a",
        parameters={"lr": 0.0123456789, "opt": "adam"},
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        value=0.25,
        metrics={"loss": 0.25, "acc": 0.9},
        start_time=T0,
        completion_time=T0 + dt.timedelta(seconds=3),
    )
    crashed = TrialInfo(
        name="t-<b>",
        parameters={"lr": 0.5, "opt": "sgd"},
        condition=TrialCondition.FAILED,
        reason="TrialFailed",
        value=0.01,
        metrics={"loss": 0.01},
    )
    return TuneResult(
        "exp", "t-a", {"lr": 0.0123456789, "opt": "adam"}, 0.25, {"loss": 0.25},
        (ok, crashed), condition="Succeeded", reason="ExperimentMaxTrialsReached",
    )  # fmt: skip


def test_a_result_as_a_dataframe() -> None:
    pytest.importorskip("pandas")
    frame = _result().to_dataframe()
    assert list(frame.columns) == [
        "trial", "condition", "reason", "value", "params.lr", "params.opt", "metrics.loss",
        "metrics.acc", "start_time", "completion_time", "duration",
    ]  # fmt: skip
    assert list(frame["trial"]) == ["t-a", "t-<b>"]
    assert frame.loc[0, "params.lr"] == 0.0123456789  # full precision, typed
    assert frame.loc[0, "duration"] == 3.0
    assert frame.loc[1, "condition"] == "Failed" and frame["metrics.acc"].isna()[1]


def test_without_pandas_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunery\[pandas\]'"):
        _result().to_dataframe()


def test_a_result_renders_as_a_table_in_jupyter() -> None:
    page = _result()._repr_html_()
    assert page.startswith("<p><b>exp</b>: Succeeded (ExperimentMaxTrialsReached), 2 trials")
    assert "best trial <b>t-a</b>: value <b>0.25</b> with lr=0.01235, opt=adam" in page
    assert "<th>params.lr</th>" in page and "<td>0.01235</td>" in page
    assert '<tr style="font-weight:bold"><td>t-a</td>' in page
    assert "t-&lt;b&gt;" in page and "t-<b>" not in page  # escaped
    empty = TuneResult("exp", None, {}, None, {}, (), condition="Failed")._repr_html_()
    assert "no successful trial" in empty


@pytest.mark.usefixtures("isolated_cwd")
def test_client_trials_dataframe() -> None:
    pytest.importorskip("pandas")
    result = tune(
        lambda p: p["x"] * 2,
        {"x": search.discrete([1, 2])},
        algorithm_name="grid",
        max_trial_count=2,
        verbose=False,
    )
    with Client() as client:
        frame = client.trials_dataframe(result.experiment_name)
    assert sorted(frame["params.x"]) == [1, 2]
    assert sorted(frame["value"]) == [2.0, 4.0] and set(frame["condition"]) == {"Succeeded"}
