"""``tunery status``, ``trials --sort objective`` and ``best`` on a store of many trials read
what they print, not the whole history: counts by an aggregate query, the best trial by an
indexed query, trials sorted by the store in pages (the listing is the same as the full sort's,
and the full trial list is never read)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tunery.cli.app import main
from tunery.store import TrialRecord, open_store
from tunery.store.sql import SqlStore
from tunery.trials import TrialCondition

SPEC = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Experiment",
    "metadata": {"name": "big"},
    "spec": {
        "objective": {"type": "maximize", "objectiveMetricName": "acc"},
        "algorithm": {"algorithmName": "random"},
        "parameters": [
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
        ],
    },
}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
N = 700


def _trial(i: int) -> TrialRecord:
    acc = f"{(i * 37) % N / N:.4f}"
    failed = i % 100 == 5
    return TrialRecord(
        name=f"big-{i:04d}",
        experiment_name="big",
        assignment={"x": f"{i / N:.4f}"},
        condition=TrialCondition.FAILED if failed else TrialCondition.SUCCEEDED,
        reason="TrialFailed" if failed else "TrialSucceeded",
        message="boom\nmore" if failed else "ok",
        created_at=T0,
        observation={"metrics": [{"name": "acc", "min": acc, "max": acc, "latest": acc}]}
        if i % 50
        else {},
    )


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/big.db"
    store = open_store(url)
    store.create_experiment("big", SPEC)
    store.create_trials([_trial(i) for i in range(N)])
    store.close()

    def no_full_list(*args: Any, **kwargs: Any) -> Any:
        if len(args) < 3 or args[2] is None:  # (self, name, conditions)
            raise AssertionError("the command listed every trial")
        return real(*args, **kwargs)

    real = SqlStore.list_trials
    monkeypatch.setattr(SqlStore, "list_trials", no_full_list)
    return url


def test_trials_sorted_by_objective_stream_in_pages(url: str) -> None:
    out = CliRunner().invoke(main, ["trials", "big", "--sort", "objective", "--db", url])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["TRIAL", "STATUS", "acc(max)", "x"]
    table = [line.split() for line in lines[1 : N + 1]]
    values = [float(r[2]) for r in table if r[2] != "-"]
    assert values == sorted(values, reverse=True)  # best (max) first, across every page
    assert len(table) == N and len({r[0] for r in table}) == N
    assert all(r[2] == "-" for r in table[len(values) :])  # trials without the metric last
    problems = lines[N + 1 :]
    assert problems and all(": TrialFailed: boom" in p for p in problems)
    csv = CliRunner().invoke(
        main, ["trials", "big", "--sort", "objective", "-o", "csv", "--db", url]
    )
    rows = csv.output.splitlines()
    assert rows[0].startswith("name,condition,reason,acc,x") and len(rows) == N + 1
    assert [r.split(",")[0] for r in rows[1:]] == [r[0] for r in table]
    failed = CliRunner().invoke(
        main, ["trials", "big", "--sort", "objective", "--condition", "failed", "--db", url]
    )
    assert len(failed.output.splitlines()) == 1 + 7 + 7  # header, 7 rows, 7 problem lines


def test_status_and_best_read_counts_and_the_best_trial(url: str) -> None:
    status = CliRunner().invoke(main, ["status", "big", "--db", url])
    assert status.exit_code == 0, status.output
    assert f"trials: {N} ({N - 7} succeeded, 7 failed)" in status.output
    assert "best trial: big-0227: acc=0.9986 (max)" in status.output  # 227 * 37 % 700 = 699
    assert "first Failed trial: big-0005: boom" in status.output
    best = CliRunner().invoke(main, ["best", "big", "--db", url])
    assert best.exit_code == 0 and best.output.splitlines()[0] == "big-0227"
