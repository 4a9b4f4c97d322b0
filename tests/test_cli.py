"""The ``tunery`` command: exit codes, inspection commands, JSON output, bad input.

Table, number and JSON helpers are unit-tested in tests/cli/test_cli_output.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, main

EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: cli-test
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  parallelTrialCount: 2
  maxTrialCount: 4
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "0", max: "50"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, -c, SCRIPT, "${trialParameters.x}"]
""".replace("PYTHON", sys.executable).replace(
    "SCRIPT", "\"import sys; x = int(sys.argv[1]); print(f'loss={(x - 20) ** 2}')\""
)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_run_then_inspect(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output
    assert "experiment cli-test: Succeeded (ExperimentMaxTrialsReached)" in result.output
    assert "best trial: cli-test-" in result.output

    listing = json.loads(cli("list", "-o", "json").output)
    assert [(e["name"], e["condition"], e["trials"]) for e in listing] == [
        ("cli-test", "Succeeded", 4)
    ]
    assert "cli-test" in cli("list").output

    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert len(trials) == 4 and all(t["condition"] == "Succeeded" for t in trials)
    assert all(isinstance(t["objective"], float) for t in trials)
    table = cli("trials", "cli-test").output.splitlines()
    assert table[0].split() == ["TRIAL", "STATUS", "loss(min)", "x"] and len(table) == 5

    best = json.loads(cli("best", "cli-test", "-o", "json").output)
    best_value = min(t["objective"] for t in trials)
    loss = {m["name"]: m for m in best["observation"]["metrics"]}["loss"]
    assert float(loss["min"]) == best_value

    status = json.loads(cli("status", "cli-test", "-o", "json").output)
    assert status["trialsSucceeded"] == 4 and status["currentOptimalTrial"]["bestTrialName"]

    logs = cli("logs", trials[0]["name"])
    assert logs.exit_code == 0 and logs.output.startswith("loss=")

    assert cli("delete", "cli-test", "-y").exit_code == 0
    assert json.loads(cli("list", "-o", "json").output) == []


def test_unknown_names_exit_1_with_a_message(cli, tmp_path: Path) -> None:
    from tunery.store import open_store

    open_store(f"sqlite:///{tmp_path}/t.db").close()
    result = cli("status", "nope")
    assert result.exit_code == EXIT_FAILED
    assert "nope" in result.output and "Traceback" not in result.output
    assert cli("logs", "no-such-trial").exit_code == EXIT_FAILED
    assert cli("best", "nope").exit_code == EXIT_FAILED


def test_invalid_yaml_lists_every_problem_and_exits_2(cli, tmp_path: Path) -> None:
    bad = EXPERIMENT.replace('min: "0"', 'min: "abc"').replace("random", "randm")
    (tmp_path / "bad.yaml").write_text(bad)
    for command in ("validate", "run"):
        result = cli(command, "bad.yaml")
        assert result.exit_code == EXIT_INVALID
        assert 'spec.parameters[0].feasibleSpace.min: "abc" is not a number' in result.output
        assert 'spec.algorithm.algorithmName: "randm"' in result.output
        assert "Traceback" not in result.output
    (tmp_path / "garbage.yaml").write_text("{ not: yaml: at all")
    result = cli("validate", "garbage.yaml")
    assert result.exit_code == EXIT_INVALID and "Traceback" not in result.output


def test_bad_algorithm_settings_are_invalid_input_and_nothing_is_stored(
    cli, tmp_path: Path
) -> None:
    bad = EXPERIMENT.replace(
        "algorithm: {algorithmName: random}",
        "algorithm: {algorithmName: tpe, algorithmSettings: [{name: gama, value: '0.3'}]}",
    )
    (tmp_path / "bad.yaml").write_text(bad)
    for command in ("validate", "run"):
        result = cli(command, "bad.yaml")
        assert result.exit_code == EXIT_INVALID, result.output
        assert (
            "spec.algorithm.algorithmSettings[0].name: unknown setting gama for algorithm tpe; "
            'did you mean "gamma"?'
        ) in result.output
    assert cli("list", "-o", "json").output.strip() == "[]"  # run stored nothing
    # a server given for the name answers for its settings, as the reconciler asks it
    served = cli("validate", "bad.yaml", "--suggestion-endpoint", "tpe=localhost:1")
    assert served.exit_code == 0, served.output


def test_changed_spec_under_the_same_name_is_refused(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    (tmp_path / "exp2.yaml").write_text(EXPERIMENT.replace('max: "50"', 'max: "60"'))
    result = cli("run", "exp2.yaml")
    assert result.exit_code == EXIT_INVALID
    assert "already exists with a different spec (changed: spec.parameters)" in result.output


def test_bad_endpoint_flag_is_invalid_input(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    result = cli("run", "exp.yaml", "--suggestion-endpoint", "nonsense")
    assert result.exit_code == EXIT_INVALID and "NAME=HOST:PORT" in result.output


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> str:
    (tmp_path / name).write_text(text)
    return name


def _status(cli, name: str) -> dict:
    return json.loads(cli("status", name, "-o", "json").output)


# -- defect 5 / 6: a finished experiment run again, or extended ------------------------------


def test_running_a_finished_experiment_again_says_so_and_how_to_go_on(cli, tmp_path) -> None:
    _write(tmp_path, EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    again = cli("run", "exp.yaml")
    assert again.exit_code == EXIT_INVALID
    assert "experiment 'cli-test' already exists in sqlite:///" in again.output
    assert "finished (Succeeded: ExperimentMaxTrialsReached, 4 trials)" in again.output
    assert "tunery resume cli-test --max-trials N" in again.output
    assert "tunery run exp.yaml --name NEW-NAME" in again.output
    assert _status(cli, "cli-test")["trials"] == 4  # nothing ran


@pytest.mark.parametrize("policy", ["Never", "LongRunning"])
def test_raising_max_trials_continues_a_finished_experiment_whatever_its_policy(
    cli, tmp_path: Path, policy: str
) -> None:
    _write(
        tmp_path,
        EXPERIMENT.replace("  maxTrialCount: 4", f"  maxTrialCount: 4\n  resumePolicy: {policy}"),
    )
    assert cli("run", "exp.yaml").exit_code == 0
    resumed = cli("resume", "cli-test", "--max-trials", "6")
    assert resumed.exit_code == 0, resumed.output
    status = _status(cli, "cli-test")
    assert status["trials"] == 6
    assert "ExperimentRestarting" in [c["reason"] for c in status["conditions"]]
    assert "experiment cli-test: Succeeded (ExperimentMaxTrialsReached)" in resumed.output


def test_the_yaml_may_raise_max_trials_and_change_resume_policy(cli, tmp_path: Path) -> None:
    _write(tmp_path, EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    _write(
        tmp_path,
        EXPERIMENT.replace(
            "  maxTrialCount: 4", "  maxTrialCount: 5\n  resumePolicy: LongRunning"
        ),
        "more.yaml",
    )
    result = cli("run", "more.yaml")
    assert result.exit_code == 0, result.output
    assert _status(cli, "cli-test")["trials"] == 5
    smaller = cli("resume", "cli-test", "--max-trials", "5")  # not raised: stays finished
    assert smaller.exit_code == 0 and _status(cli, "cli-test")["trials"] == 5


def test_an_experiment_that_failed_is_not_continued_by_more_trials(cli, tmp_path: Path) -> None:
    failing = EXPERIMENT.replace("print(f'loss", "sys.exit(1); print(f'loss").replace(
        "  maxTrialCount: 4", "  maxTrialCount: 4\n  maxFailedTrialCount: 1"
    )
    _write(tmp_path, failing)
    assert cli("run", "exp.yaml").exit_code == EXIT_FAILED
    refused = cli("resume", "cli-test", "--max-trials", "8")
    assert refused.exit_code == EXIT_INVALID
    assert "completed (ExperimentFailed) and cannot continue" in refused.output
    again = cli("run", "exp.yaml")
    assert again.exit_code == EXIT_INVALID and "finished (Failed: ExperimentFailed" in again.output
    assert "add trials" not in again.output and "--name NEW-NAME" in again.output


# -- defect 1 / 9: a trial that fails at start; every condition counted ----------------------


def test_a_trial_failing_at_start_quotes_its_log_in_message_and_summary(cli, tmp_path) -> None:
    broken = EXPERIMENT.replace(
        f"command: [{sys.executable}, -c, ", f"command: [{sys.executable}, missing_train.py, "
    ).replace("  maxTrialCount: 4", "  maxTrialCount: 4\n  maxFailedTrialCount: 1")
    assert "missing_train.py" in broken
    _write(tmp_path, broken)
    result = cli("run", "exp.yaml")
    assert result.exit_code == EXIT_FAILED
    assert "can't open file" in result.output and "missing_train.py" in result.output
    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    failed = [t for t in trials if t["condition"] == "Failed"]
    assert failed
    log = tmp_path / ".tunery" / "logs" / "cli-test" / f"{failed[0]['name']}.log"
    first_line, *rest = failed[0]["message"].splitlines()
    assert first_line.startswith("Trial has failed. Job message: exit code 2: ")
    assert "can't open file" in first_line  # one-line views show the cause
    assert rest[0] == f"last lines of {log}:"
    assert f"last lines of {log}:" in result.output  # the summary quotes the log and its path
    # every terminal condition is counted, not only succeeded/failed
    counts = [line for line in result.output.splitlines() if line.startswith("trials: ")]
    total = len(trials)
    assert counts == [f"trials: {total} ({_counts_words(trials)})"]
    assert "0 succeeded" not in counts[0]


def _counts_words(trials: list[dict]) -> str:
    words = {"Failed": "failed", "Killed": "killed", "Succeeded": "succeeded"}
    parts = []
    for condition in ("Succeeded", "Failed", "Killed"):
        n = sum(t["condition"] == condition for t in trials)
        if n:
            parts.append(f"{n} {words[condition]}")
    return ", ".join(parts)


# -- defect 2: store URLs ---------------------------------------------------------------------


def test_an_unsupported_db_url_is_invalid_input_without_a_traceback(tmp_path: Path) -> None:
    import subprocess

    for args in (["list", "--db", "foo://bar"], ["status", "x", "--db", "not a url"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tunery.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == EXIT_INVALID, proc.stderr
        assert proc.stderr.startswith("Error: --db: ")
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / ".tunery").exists()


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://u:secret@localhost/db", "psycopg", "postgres"),
        ("mysql://u:secret@localhost/db", "pymysql", "mysql"),
    ],
)
def test_a_missing_database_driver_names_the_extra(
    cli, monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    result = cli("list", "--db", url)
    assert result.exit_code == EXIT_UNAVAILABLE
    assert f"pip install 'tunery[{extra}]'" in result.output
    assert "secret" not in result.output and "Traceback" not in result.output


# -- defect 12: reads name the store and create none ------------------------------------------


def test_reads_create_no_store_and_name_the_one_they_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUNERY_DB_URL", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    reads = (["status", "x"], ["trials", "x"], ["best", "x"], ["logs", "x"], ["resume", "x"])
    for args in (*reads, ["delete", "x", "-y"]):
        result = runner.invoke(main, args)
        assert result.exit_code == EXIT_FAILED, (args, result.output)
        assert f"no tunery store at {elsewhere}/.tunery/tunery.db" in result.output
    listing = runner.invoke(main, ["list"])
    assert listing.exit_code == 0
    assert listing.output.strip() == f"no experiments in sqlite:///{elsewhere}/.tunery/tunery.db"
    assert not (elsewhere / ".tunery").exists()


def test_not_found_names_the_store_with_its_password_hidden(cli, tmp_path: Path) -> None:
    _write(tmp_path, EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    result = cli("status", "nope")
    assert result.exit_code == EXIT_FAILED
    assert f"(store: sqlite:///{tmp_path}/t.db)" in result.output


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # trust auth ignores passwords
def test_not_found_on_a_server_store_hides_the_password(db_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    with_password = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["status", "nope", "--db", with_password])
    assert result.exit_code == EXIT_FAILED, result.output
    assert "experiment 'nope'" in result.output and ":***@" in result.output
    assert "s3cret-pw" not in result.output


# -- defect 10 / 11 / 15 / 19: tables, rounding, JSON numbers, strategies ----------------------

TWO_METRICS = (
    EXPERIMENT.replace(
        "objective: {type: minimize, objectiveMetricName: loss}",
        "objective: {type: minimize, objectiveMetricName: loss, "
        "additionalMetricNames: [accuracy]}",
    )
    .replace(
        '- {name: x, parameterType: int, feasibleSpace: {min: "0", max: "50"}}',
        '- {name: x, parameterType: int, feasibleSpace: {min: "0", max: "50"}}\n'
        '    - {name: lr, parameterType: double, feasibleSpace: {min: "0.001", max: "0.3"}}',
    )
    .replace(
        "trialParameters: [{name: x, reference: x}]",
        "trialParameters: [{name: x, reference: x}, {name: lr, reference: lr}]",
    )
    .replace(
        '"${trialParameters.x}"]',
        '"${trialParameters.x}", "${trialParameters.lr}"]\n'
        "                image: docker.io/library/python:3.11-slim",
    )
    .replace(
        "print(f'loss={(x - 20) ** 2}')",
        "print(f'loss={(x - 20) ** 2}'); print(f'accuracy={1 / (1 + (x - 20) ** 2)}')",
    )
)


def test_trials_table_has_every_metric_rounded_sorts_filters_and_exports_csv(
    cli, tmp_path: Path
) -> None:
    _write(tmp_path, TWO_METRICS)
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output
    assert "is ignored" not in result.output  # the image note is for -v
    rows = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert all(isinstance(r["parameters"]["x"], int) for r in rows)
    assert all(isinstance(r["parameters"]["lr"], float) for r in rows)
    assert all(
        isinstance(m[k], int | float)
        for r in rows
        for m in r["metrics"]
        for k in ("min", "max", "latest")
    )
    assert all(set(r["values"]) == {"loss", "accuracy"} for r in rows)

    table = cli("trials", "cli-test", "--sort", "objective").output.splitlines()
    assert table[0].split() == ["TRIAL", "STATUS", "loss(min)", "accuracy(min)", "x", "lr"]
    losses = [float(line.split()[2]) for line in table[1:]]
    assert losses == sorted(losses)
    for line, row in zip(table[1:], sorted(rows, key=lambda r: r["values"]["loss"]), strict=True):
        lr_shown = line.split()[-1]
        assert float(lr_shown) == pytest.approx(row["parameters"]["lr"], rel=1e-3)
        assert len(lr_shown.replace("0.", "").lstrip("0")) <= 4  # 4 significant digits
    descending = cli("trials", "cli-test", "--sort=-x").output.splitlines()[1:]
    xs = [int(line.split()[4]) for line in descending]
    assert xs == sorted(xs, reverse=True)
    bad_sort = cli("trials", "cli-test", "--sort", "nope")
    assert (
        bad_sort.exit_code == EXIT_INVALID and "--sort: unknown column 'nope'" in bad_sort.output
    )

    assert cli("trials", "cli-test", "--condition", "failed").output.splitlines()[1:] == []
    assert len(cli("trials", "cli-test", "--condition", "Succeeded").output.splitlines()) == 5

    import csv
    import io

    exported = list(csv.DictReader(io.StringIO(cli("trials", "cli-test", "-o", "csv").output)))
    assert list(exported[0]) == [
        "name",
        "condition",
        "reason",
        "loss",
        "accuracy",
        "x",
        "lr",
        "start_time",
        "end_time",
    ]
    by_name = {r["name"]: r for r in rows}
    for line in exported:
        assert float(line["lr"]) == by_name[line["name"]]["parameters"]["lr"]  # full precision
        assert float(line["loss"]) == by_name[line["name"]]["values"]["loss"]

    # defect 19: the summary says which strategy picked each metric
    assert "loss=" in result.output and " (min), accuracy=" in result.output

    verbose = CliRunner().invoke(main, ["-v", "run", "exp.yaml", "--name", "verbose-run"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.output.count("image docker.io/library/python:3.11-slim is ignored") == 1


def test_json_gives_numbers_where_values_are_numeric(cli, tmp_path: Path) -> None:
    _write(tmp_path, TWO_METRICS)
    assert cli("run", "exp.yaml").exit_code == 0
    best = json.loads(cli("best", "cli-test", "-o", "json").output)
    params = {p["name"]: p["value"] for p in best["parameterAssignments"]}
    assert isinstance(params["x"], int) and isinstance(params["lr"], float)
    assert all(
        isinstance(m[k], int | float) and not isinstance(m[k], bool)
        for m in best["observation"]["metrics"]
        for k in ("min", "max", "latest")
    )
    status = _status(cli, "cli-test")
    assert status["currentOptimalTrial"] == best
    assert "localBaseDir" not in status  # the local controller's bookkeeping stays inside
    (summary,) = json.loads(cli("list", "-o", "json").output)
    assert summary["best"] == best and summary["counts"]["Succeeded"] == 4


def test_list_stays_aligned_with_long_names(cli, tmp_path: Path) -> None:
    long_name = "a-long-name-past-thirty-characters-x"
    _write(tmp_path, EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    assert cli("run", "exp.yaml", "--name", long_name).exit_code == 0
    lines = cli("list").output.splitlines()
    column = lines[0].index("STATUS")
    assert all(line[column:].startswith("Succeeded") for line in lines[1:])
    assert {line.split()[0] for line in lines[1:]} == {"cli-test", long_name}


# -- defect 13: logs of an experiment ----------------------------------------------------------


def test_logs_of_an_experiment_prefixes_each_trials_lines(cli, tmp_path: Path) -> None:
    _write(tmp_path, EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    result = cli("logs", "cli-test")
    assert result.exit_code == 0, result.output
    names = [t["name"] for t in json.loads(cli("trials", "cli-test", "-o", "json").output)]
    for name in names:
        assert f"[{name}] --- {tmp_path}/.tunery/logs/cli-test/{name}.log (Succeeded)" in (
            result.output
        )
        assert f"[{name}] loss=" in result.output
    follow = cli("logs", "cli-test", "-f")
    assert follow.exit_code == EXIT_INVALID and "tunery logs TRIAL -f" in follow.output
    missing = cli("logs", "nothing-here")
    assert missing.exit_code == EXIT_FAILED
    assert "no trial or experiment named 'nothing-here'" in missing.output


# -- defect 20 and the rest ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["enas", "darts"])
def test_nas_algorithms_are_named_as_unsupported(cli, tmp_path: Path, algorithm: str) -> None:
    _write(tmp_path, EXPERIMENT.replace("algorithmName: random", f"algorithmName: {algorithm}"))
    result = cli("validate", "exp.yaml")
    assert result.exit_code == EXIT_INVALID
    assert "tunery does not support NAS" in result.output


def test_version(cli) -> None:
    from importlib.metadata import version

    result = cli("--version")
    assert (
        result.exit_code == 0 and result.output.strip() == f"tunery, version {version('tunery')}"
    )


def test_extending_keeps_running_trials_in_the_yaml_folder(cli, tmp_path: Path) -> None:
    """The trials of a resumed experiment run where the first ones did (the YAML's folder),
    not where `tunery resume` is typed: the script path below is relative to the YAML."""
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "train.py").write_text("import sys\nprint(f'loss={(int(sys.argv[1]) - 20) ** 2}')\n")
    head = EXPERIMENT.split("command:")[0]  # the command is the document's last line
    _write(sub, head + f'command: [{sys.executable}, train.py, "${{trialParameters.x}}"]\n')
    assert cli("run", "project/exp.yaml").exit_code == 0
    resumed = cli("resume", "cli-test", "--max-trials", "6")
    assert resumed.exit_code == 0, resumed.output
    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert [t["condition"] for t in trials] == ["Succeeded"] * 6
