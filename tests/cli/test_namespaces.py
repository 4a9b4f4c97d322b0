"""The inspection commands read one namespace of a store shared with the operator
(``--namespace`` / ``TUNERY_NAMESPACE``; ``default`` otherwise), and a name that is only in
another namespace is reported with where it is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli.app import EXIT_FAILED, EXIT_INVALID, main
from tunery.store import TrialRecord, open_store
from tunery.trials import TrialCondition


def _spec(name: str, metric: str) -> dict[str, object]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": metric},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            ],
        },
    }


def _trial(experiment: str, name: str, metric: str, value: str) -> TrialRecord:
    return TrialRecord(
        name=name,
        experiment_name=experiment,
        assignment={"x": value},
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="ok",
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        observation={"metrics": [{"name": metric, "min": value, "max": value, "latest": value}]},
    )


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``mnist`` in ``default`` (metric acc) and in ``team-a`` (metric f1); ``only-a`` in
    ``team-a`` alone."""
    monkeypatch.delenv("TUNERY_NAMESPACE", raising=False)
    url = f"sqlite:///{tmp_path}/shared.db"
    store = open_store(url)
    store.create_experiment("mnist", _spec("mnist", "acc"))
    store.create_trials([_trial("mnist", "mnist-d1", "acc", "0.5")])
    team = store.in_namespace("team-a")
    team.create_experiment("mnist", _spec("mnist", "f1"))
    team.create_experiment("only-a", _spec("only-a", "f1"))
    team.create_trials([_trial("mnist", "mnist-a1", "f1", "0.75")])
    team.create_trials([_trial("only-a", "only-a-1", "f1", "0.25")])
    store.close()
    return url


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_each_command_reads_the_namespace_it_is_given(url: str) -> None:
    code, out = _run("best", "mnist", "--db", url)
    assert code == 0 and out.splitlines()[0] == "mnist-d1", out
    code, out = _run("best", "mnist", "--db", url, "--namespace", "team-a")
    assert code == 0 and out.splitlines()[0] == "mnist-a1", out
    code, out = _run("trials", "mnist", "--db", url, "-n", "team-a")
    assert code == 0 and "mnist-a1" in out and "mnist-d1" not in out and "f1" in out, out
    code, out = _run("status", "only-a", "--db", url, env={"TUNERY_NAMESPACE": "team-a"})
    assert code == 0 and "only-a-1" in out, out


def test_list_names_the_other_namespaces_only_when_none_was_given(url: str) -> None:
    code, out = _run("list", "--db", url)
    assert code == 0, out
    names = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert names == ["mnist"], out
    assert out.splitlines()[-1] == ("other namespaces in this store: team-a (--namespace NAME)"), (
        out
    )
    code, out = _run("list", "--db", url, "--namespace", "team-a")
    assert code == 0 and "other namespaces" not in out, out
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == ["mnist", "only-a"]
    code, out = _run("list", "--db", url, "--namespace", "nobody")
    assert code == 0 and out.strip() == f"no experiments in namespace nobody of {url}", out


def test_a_name_held_only_elsewhere_is_reported_with_its_namespace(url: str) -> None:
    code, out = _run("status", "only-a", "--db", url)
    assert code == EXIT_FAILED, out
    assert "not found" in out and f"(store: {url})" in out, out
    assert "'only-a' is in namespace team-a: pass --namespace" in out, out
    code, out = _run("logs", "only-a-1", "--db", url)  # a trial name
    assert code == EXIT_FAILED and "is in namespace team-a" in out, out
    code, out = _run("best", "mnist-x", "--db", url, "-n", "team-a")
    assert code == EXIT_FAILED and f"(store: {url}, namespace: team-a)" in out, out
    assert "pass --namespace" not in out, out


def test_delete_touches_only_its_namespace(url: str) -> None:
    code, out = _run("delete", "mnist", "--db", url, "-n", "team-a", "--yes")
    assert code == 0, out
    store = open_store(url)
    try:
        assert [e.name for e in store.list_experiments()] == ["mnist"]
        assert [t.name for t in store.list_trials("mnist")] == ["mnist-d1"]
        assert [e.name for e in store.in_namespace("team-a").list_experiments()] == ["only-a"]
    finally:
        store.close()


def test_a_bad_namespace_is_refused_naming_the_option(url: str) -> None:
    code, out = _run("status", "mnist", "--db", url, "--namespace", "x" * 64)
    assert code == EXIT_INVALID and "--namespace:" in out and "63" in out, out
