"""tunery.sdk.trial_entry: typed arguments, calling the objective, reporting what it returns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tunery import search
from tunery.sdk import trial_entry as entry
from tunery.sdk.document import (
    TuneSpec,
    kubernetes_container,
    local_container,
    write_local_payload,
)

PARAMS = [
    {"name": "lr", "type": "double"},
    {"name": "layers", "type": "int"},
    {"name": "opt", "type": "categorical"},
    {"name": "bs", "type": "discrete", "values": [16, 0.5]},
]


def _spec(**parameters: object) -> TuneSpec:
    return TuneSpec(
        name="entry-test",
        parameters=parameters
        or {
            "lr": search.double(0.001, 0.1),
            "layers": search.int(1, 8),
            "opt": search.categorical(["sgd", "adam"]),
            "bs": search.discrete([16, 0.5]),
            "epochs": 3,
        },
        objective_metric_name="loss",
        objective_type="minimize",
    )


# -- arguments -----------------------------------------------------------------------------------


def test_arguments_arrive_as_real_types() -> None:
    values = entry.parse_arguments(PARAMS, ["lr=0.01", "layers=3", "opt=adam", "bs=16"])
    assert values == {"lr": 0.01, "layers": 3, "opt": "adam", "bs": 16}
    assert [type(v) for v in values.values()] == [float, int, str, int]
    assert entry.parse_arguments(PARAMS, ["lr=1", "layers=3.0", "opt=a=b", "bs=0.5"]) == {
        "lr": 1.0,
        "layers": 3,
        "opt": "a=b",
        "bs": 0.5,
    }


def test_a_categorical_value_arrives_verbatim() -> None:
    tricky = 'it\'s $(rm -rf /); `x` "q" ${HOME}'
    assert entry.parse_arguments([PARAMS[2]], [f"opt={tricky}"]) == {"opt": tricky}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lr=0.1"], "expected 4 name=value argument"),
        (["layers=1", "lr=0.1", "opt=a", "bs=16"], "expected an argument lr=<value>"),
        (["lr=abc", "layers=1", "opt=a", "bs=16"], "'abc' is not a number"),
        (["lr=0.1", "layers=1.5", "opt=a", "bs=16"], "'1.5' is not an integer"),
    ],
)
def test_bad_arguments_are_spec_errors(args: list[str], message: str) -> None:
    with pytest.raises(entry.TrialSpecError, match=message):
        entry.parse_arguments(PARAMS, args)


# -- what the objective returns ----------------------------------------------------------------


def test_a_returned_number_is_the_objective_metric() -> None:
    assert entry.metrics_of(0.25, "loss") == ({"loss": "0.25"}, [])
    assert entry.metrics_of(3, "loss") == ({"loss": "3"}, [])
    assert entry.metrics_of(np.float32(0.5), "loss") == ({"loss": "0.5"}, [])
    assert entry.metrics_of(np.int64(7), "loss") == ({"loss": "7"}, [])


def test_a_returned_dict_reports_its_numbers_and_warns_about_the_rest() -> None:
    metrics, warnings = entry.metrics_of({"loss": 0.1, "acc": 0.9, "model": object()}, "loss")
    assert metrics == {"loss": "0.1", "acc": "0.9"}
    assert len(warnings) == 1 and "'model'" in warnings[0]
    metrics, warnings = entry.metrics_of({"acc": 0.9}, "loss")
    assert metrics == {"acc": "0.9"}
    assert "without the objective metric 'loss'" in warnings[0]


def test_none_reports_nothing_and_nan_is_flagged() -> None:
    assert entry.metrics_of(None, "loss") == ({}, [])
    metrics, warnings = entry.metrics_of(float("nan"), "loss")
    assert metrics == {"loss": "nan"} and "never chosen" in warnings[0]


@pytest.mark.parametrize("value", [[0.1], "0.1", True, object()])
def test_other_return_values_are_rejected(value: object) -> None:
    with pytest.raises(TypeError, match="return a number"):
        entry.metrics_of(value, "loss")


# -- reporting ----------------------------------------------------------------------------------


def test_returned_metrics_are_printed_with_a_timestamp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(entry.METRICS_FILE_ENV, raising=False)
    assert entry.report({"loss": "0.5", "acc": "0.75"}) == []
    line = capsys.readouterr().out.strip()
    stamp, pairs = line.split(" ", 1)
    assert stamp.endswith("Z") and stamp[:4].isdigit()
    assert pairs == "loss=0.5 acc=0.75"


def test_a_value_continues_the_steps_the_objective_pushed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_file = tmp_path / "m.jsonl"
    metrics_file.write_text(
        '{"timestamp": 1.0, "step": 0, "loss": "0.9"}\n'
        '{"timestamp": 2.0, "step": 4, "loss": "0.5"}\n'
        '{"timestamp": 3.0, "acc": "0.1"}\n'
        "not json\n"
    )
    monkeypatch.setenv(entry.METRICS_FILE_ENV, str(metrics_file))
    entry.report({"loss": "0.4", "acc": "0.2", "other": "1", "val/loss": "0.3"})
    lines = [json.loads(x) for x in metrics_file.read_text().splitlines()[4:]]
    by_step = {line.get("step"): line for line in lines}
    assert by_step[5]["loss"] == "0.4"  # after the largest pushed step
    assert by_step[None]["acc"] == "0.2" and by_step[None]["val/loss"] == "0.3"
    assert capsys.readouterr().out.strip().endswith(" other=1")  # never pushed: printed


def test_an_unprintable_name_without_a_metrics_file_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(entry.METRICS_FILE_ENV, raising=False)
    warnings = entry.report({"val/loss": "0.3"})
    assert "cannot be printed" in warnings[0]
    assert capsys.readouterr().out == ""


# -- main, in this process ----------------------------------------------------------------------


def test_main_calls_the_objective_with_typed_values_and_constants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(entry.METRICS_FILE_ENV, raising=False)

    def objective(p: dict) -> float:
        print("called with", repr(p))  # the objective is a copy: it can only tell by output
        return p["lr"] * p["epochs"]

    spec_path, _ = write_local_payload(_spec(), objective, tmp_path)
    status = entry.main([str(spec_path), "lr=0.5", "layers=2", "opt=sgd", "bs=0.5"])
    assert status == 0
    first, last = capsys.readouterr().out.strip().splitlines()
    # typed values, then the constants, in the order of `parameters`
    assert first == "called with {'lr': 0.5, 'layers': 2, 'opt': 'sgd', 'bs': 0.5, 'epochs': 3}"
    assert last.endswith(" loss=1.5")


def test_main_prints_the_objectives_traceback_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def objective(p: dict) -> float:
        raise ValueError(f"diverged at lr={p['lr']}")

    spec_path, _ = write_local_payload(_spec(), objective, tmp_path)
    assert entry.main([str(spec_path), "lr=0.5", "layers=2", "opt=sgd", "bs=16"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert 'raise ValueError(f"diverged at lr={p[' in err
    assert "ValueError: diverged at lr=0.5" in err
    assert "in main" not in err  # the entry point's own frame is not shown


def test_the_traceback_names_the_objectives_file_and_its_helpers_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cloudpickle ships by-value code as "<dynamic-code>"; the trial puts the file back for
    the objective and the helpers pickled with it, so the log shows where it failed."""

    def check(lr: float) -> None:
        if lr > 0.1:
            raise ValueError(f"helper rejects lr={lr}")

    def objective(p: dict) -> float:
        check(p["lr"])
        return 0.0

    spec_path, _ = write_local_payload(_spec(), objective, tmp_path)
    assert entry.main([str(spec_path), "lr=0.5", "layers=2", "opt=sgd", "bs=16"]) == 1
    err = capsys.readouterr().err
    assert f'File "{__file__}"' in err
    assert "<dynamic-code>" not in err
    assert 'check(p["lr"])' in err
    assert 'raise ValueError(f"helper rejects lr={lr}")' in err


def test_main_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main([]) == entry.EXIT_USAGE
    assert entry.main([str(tmp_path / "missing.json")]) == entry.EXIT_USAGE
    assert "cannot read the trial spec" in capsys.readouterr().err
    (tmp_path / "old.json").write_text('{"version": 99}')
    assert entry.main([str(tmp_path / "old.json")]) == entry.EXIT_USAGE
    assert "unsupported trial spec version 99" in capsys.readouterr().err


def test_a_wrong_return_type_fails_the_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path, _ = write_local_payload(_spec(), lambda p: [1, 2], tmp_path)
    assert entry.main([str(spec_path), "lr=0.5", "layers=2", "opt=sgd", "bs=16"]) == 1
    assert "the objective returned list" in capsys.readouterr().err


# -- as a trial process -----------------------------------------------------------------------

ASSIGNMENT = {"lr": "0.05", "layers": "3", "opt": "adam", "bs": "16"}


def test_the_local_container_runs_a_closure_in_a_fresh_process(
    tmp_path: Path, render, run
) -> None:
    scale = 10.0  # captured by the lambda: cloudpickle sends it by value

    def types_of(p: dict) -> dict:
        print("types", " ".join(f"{k}:{type(v).__name__}" for k, v in p.items()))
        return {"loss": p["lr"] * scale, "acc": 0.5}

    spec = _spec()
    folder = tmp_path / "exp"
    spec_path, _ = write_local_payload(spec, types_of, folder)
    container = render(spec, local_container(spec, spec_path), ASSIGNMENT)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    done = run(container, elsewhere)
    assert done.returncode == 0, done.stderr
    assert "types lr:float layers:int opt:str bs:int epochs:int" in done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith(" loss=0.5 acc=0.5")


def test_a_crashing_trial_process_exits_1_with_its_traceback(tmp_path: Path, render, run) -> None:
    def crash(p: dict) -> float:
        return 1 / 0

    spec = _spec()
    spec_path, _ = write_local_payload(spec, crash, tmp_path / "exp")
    container = render(spec, local_container(spec, spec_path), ASSIGNMENT)
    done = run(container, tmp_path)
    assert done.returncode == 1
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert "return 1 / 0" in done.stderr


def self_contained(p: dict) -> float:
    import math

    return math.sqrt(p["lr"] * 100) + p["layers"] + len(p["opt"]) + p["epochs"]


def test_the_cluster_container_runs_the_objectives_source_without_tunery(
    tmp_path: Path, render, run
) -> None:
    spec = _spec()
    container, mode = kubernetes_container(spec, self_contained, base_image="python:3.11")
    assert mode == "source"
    rendered = render(spec, container, ASSIGNMENT)
    assert rendered["command"][:3] == ["python", "-u", "-c"]
    # the image has Python but no tunery: run with an empty PYTHONPATH in an empty folder
    done = run(rendered, tmp_path, extra_env={"PYTHONPATH": ""}, replace_python=sys.executable)
    assert done.returncode == 0, done.stderr
    expected = (0.05 * 100) ** 0.5 + 3 + 4 + 3
    assert done.stdout.strip().endswith(f" loss={expected!r}")


def test_the_cluster_container_pickles_closures(tmp_path: Path, render, run) -> None:
    offset = 100

    def closure(p: dict) -> float:
        return p["lr"] + offset

    spec = _spec()
    container, mode = kubernetes_container(spec, closure, base_image="python:3.11")
    assert mode == "pickle"
    done = run(render(spec, container, ASSIGNMENT), tmp_path, replace_python=sys.executable)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(" loss=100.05")


def test_the_entry_source_has_no_placeholders() -> None:
    source = Path(entry.__file__).read_text()
    assert "${" not in source  # the template renderer would substitute it
    assert "import tunery" not in source and "from tunery" not in source
