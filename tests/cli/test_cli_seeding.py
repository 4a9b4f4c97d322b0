"""``tunery run/resume --enqueue POINTS.json --warm-start OTHER`` end to end (real trial
processes, SQLite in a temp folder), and how ``tunery trials`` shows the seeded trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_cli import EXPERIMENT
from tunery.cli import EXIT_INVALID, main


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_run_with_enqueue_then_warm_start_another_run(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    (tmp_path / "points.json").write_text(json.dumps([{"x": 20}, {"x": "21"}]))
    result = cli("run", "exp.yaml", "--enqueue", "points.json")
    assert result.exit_code == 0, result.output
    assert "enqueued 2 point(s)" in result.output
    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert [t["parameters"]["x"] for t in trials][:2] == [20, 21]
    assert len(trials) == 4 and all(t["condition"] == "Succeeded" for t in trials)
    assert all(t["labels"]["tunery.io/enqueued"] == "true" for t in trials[:2])

    # a narrower space: x = 21 (and any other x > 20) no longer fits and is skipped, by name
    (tmp_path / "narrow.yaml").write_text(EXPERIMENT.replace('max: "50"', 'max: "20"'))
    result = cli(
        "run", "narrow.yaml", "--name", "second", "--max-trials", "2", "--warm-start", "cli-test"
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "warning: warm start: skipped experiment 'cli-test', trial 'cli-test-" in out
    assert "parameters.x: '21': 21 is outside its feasible space (int in [0, 20])" in out
    fitting = sum(t["parameters"]["x"] <= 20 for t in trials)
    assert f"warm start from 'cli-test': {fitting} trial(s) added, {4 - fitting} skipped" in out
    second = json.loads(cli("trials", "second", "-o", "json").output)
    warm = [t for t in second if t["reason"] == "WarmStart"]
    assert len(warm) == fitting and len(second) == fitting + 2  # 2 run: the budget
    best = json.loads(cli("best", "second", "-o", "json").output)
    assert best["bestTrialName"] == warm[0]["name"]  # x = 20, loss 0, imported
    table = cli("trials", "second").output
    assert table.count("Succeeded (warm start)") == fitting


def test_resume_keeps_seeds_once_and_refuses_bad_ones(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    (tmp_path / "bad.json").write_text(json.dumps([{"x": 3}, {"x": 99}]))
    result = cli("run", "exp.yaml", "--enqueue", "bad.json")
    assert result.exit_code == EXIT_INVALID
    assert "bad.json: enqueue[1].x: 99: 99 is outside its feasible space" in result.output
    assert json.loads(cli("list", "-o", "json").output) == []  # nothing stored
    result = cli("run", "exp.yaml", "--warm-start", "nope")
    assert result.exit_code == EXIT_INVALID and "no experiment 'nope'" in result.output
    (tmp_path / "points.json").write_text(json.dumps([{"x": 5}, {"x": 6}]))
    assert cli("run", "exp.yaml", "--enqueue", "points.json").exit_code == 0
    # the same points again when raising the budget: already enqueued, not added twice
    result = cli("resume", "cli-test", "--max-trials", "5", "--enqueue", "points.json")
    assert result.exit_code == 0, result.output
    assert "enqueued 0 point(s)" in result.output
    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert len(trials) == 5 and [t["parameters"]["x"] for t in trials][:2] == [5, 6]


def test_seed_annotations_in_the_yaml(cli, tmp_path: Path) -> None:
    annotated = EXPERIMENT.replace(
        "  name: cli-test\n",
        '  name: cli-test\n  annotations:\n    tunery.io/enqueue: \'[{"x": 17}, {"x": 18}]\'\n',
    )
    (tmp_path / "exp.yaml").write_text(annotated)
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output
    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert [t["parameters"]["x"] for t in trials][:2] == [17, 18] and len(trials) == 4
    (tmp_path / "bad.yaml").write_text(annotated.replace('"x": 18', '"x": 80'))
    result = cli("run", "bad.yaml", "--name", "bad")
    assert result.exit_code == EXIT_INVALID
    assert "metadata.annotations['tunery.io/enqueue'][1].x: 80" in result.output
