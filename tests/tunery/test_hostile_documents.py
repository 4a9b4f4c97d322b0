"""Hostile and malformed Experiment documents: each gets an ExperimentError naming the field
path (or the line and column), at a bounded cost, and ``tunery validate`` exits 2 without a
traceback. See :mod:`tunery.experiment.reading` for the limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.settings_check import MAX_GRID_VALUES, load_checked
from tunery.experiment import ExperimentError, load_experiment
from tunery.experiment.reading import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_VALUES

ROOT = Path(__file__).resolve().parents[2]
BASE = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: hostile
spec:
  objective:
    type: minimize
    objectiveMetricName: loss
  algorithm:
    algorithmName: random
  parallelTrialCount: 2
  maxTrialCount: 4
  parameters:
    - name: lr
      parameterType: double
      feasibleSpace:
        min: "0.01"
        max: "0.5"
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - name: lr
        reference: lr
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                image: python
                command: ["python3", "train.py", "--lr=${trialParameters.lr}"]
            restartPolicy: Never
"""
CONTAINER = "spec.trialTemplate.trialSpec.spec.template.spec.containers[0]"
COMMAND_LINE = '                command: ["python3", "train.py", "--lr=${trialParameters.lr}"]\n'


def replaced(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def container_field(text: str) -> str:
    """BASE with ``text`` (YAML lines at the container's indentation) after the command."""
    return replaced(COMMAND_LINE, COMMAND_LINE + text)


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return BASE + "\n".join(lines) + "\n"


# (id, document: str | bytes | mapping, expected path, expected message fragment)
CASES: list[tuple[str, Callable[[], Any], str, str]] = [
    ("utf16-bom", lambda: BASE.encode("utf-16"), "", "UTF-16-encoded"),
    ("utf32-bom", lambda: BASE.encode("utf-32"), "", "UTF-32-encoded"),
    (
        "latin1",
        lambda: replaced("name: hostile", "name: hostilé").encode("latin-1"),
        "",
        "line 4, column 15: byte 0xe9 is not valid UTF-8",
    ),
    (
        "utf16-no-bom",
        lambda: BASE.encode("utf-16-le"),
        "",
        "line 1, column 2: a NUL character; the document looks UTF-16- or UTF-32-encoded",
    ),
    ("utf16be-no-bom", lambda: BASE.encode("utf-16-be"), "", "line 1, column 1: a NUL"),
    (
        "nul-in-a-comment",
        lambda: replaced("kind: Experiment", "kind: Experiment # \0").encode(),
        "",
        "line 2, column 20: a NUL character; YAML allows none",
    ),
    ("lone-surrogate", lambda: replaced("hostile", "host\ud800ile"), "", "line 4, column 13"),
    (
        "deep-flow-nesting",
        lambda: BASE + "x: " + "[" * 2000 + "]" * 2000 + "\n",
        "x[0][0][0][0][0][0][0][0][0][0][0]... (100 levels)",
        f"is nested more than {MAX_DEPTH} levels deep (line 35, column 103)",
    ),
    (
        "deep-block-nesting",
        lambda: BASE + "".join(" " * i + f"k{i}:\n" for i in range(600)) + " " * 600 + "v\n",
        "k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11... (100 levels)",
        "is nested more than 100 levels deep",
    ),
    (
        "int-4000-digits",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: " + "9" * 4000),
        "spec.maxTrialCount",
        "an integer of 4000 digits is out of range: integers must fit in 64 bits",
    ),
    (
        "int-5000-digits",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: " + "9" * 5000),
        "spec.maxTrialCount",
        "an integer of 5000 digits is out of range",
    ),
    (  # Katib's feasibleSpace values are strings: a quoted 4,000-digit int reaches the checks
        "quoted-int-4000-digits-min",
        lambda: replaced('min: "0.01"', 'min: "' + "9" * 4000 + '"'),
        "spec.parameters[0].feasibleSpace.min",
        "is too large (beyond a double's range)",
    ),
    (
        "quoted-int-4000-digits-step",
        lambda: replaced('max: "0.5"', 'max: "0.5"\n        step: "' + "9" * 4000 + '"'),
        "spec.parameters[0].feasibleSpace.step",
        "is too large (beyond a double's range)",
    ),
    (
        "quoted-int-4000-digits-discrete",
        lambda: replaced("parameterType: double", "parameterType: discrete").replace(
            'min: "0.01"\n        max: "0.5"', 'list: ["1", "' + "9" * 4000 + '"]'
        ),
        "spec.parameters[0].feasibleSpace.list[1]",
        "is too large (beyond a double's range)",
    ),
    (  # each bound fits a double, their difference (as an int) does not
        "quoted-int-range-over-a-double",
        lambda: replaced('min: "0.01"', 'min: "-1' + "0" * 308 + '"').replace(
            'max: "0.5"', 'max: "1' + "0" * 308 + '"'
        ),
        "spec.parameters[0].feasibleSpace",
        "max - min overflows a double",
    ),
    (
        "int-over-int64",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: 1000000000000000000000000000000"),
        "spec.maxTrialCount",
        "an integer of 31 digits is out of range",
    ),
    (
        "count-over-int32",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: 1000000000000"),
        "spec.maxTrialCount",
        "is too large: Katib's trial counts are 32-bit integers (at most 2147483647)",
    ),
    (
        "parallel-over-int32",
        lambda: replaced("parallelTrialCount: 2", "parallelTrialCount: 2147483648"),
        "spec.parallelTrialCount",
        "32-bit integers",
    ),
    (
        "count-float-1e30",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: 1.0e+30"),
        "spec.maxTrialCount",
        "is not an integer",
    ),
    (
        "alias-bomb",
        alias_bomb,
        "a5[0]",
        f"the document holds more than {MAX_VALUES} values once its aliases are expanded",
    ),
    (  # a metric strategy's check listed the metric names, None among them
        "null-objective-metric-name",
        lambda: replaced("objectiveMetricName: loss", "objectiveMetricName: null"),
        "spec.objective.objectiveMetricName",
        "is required",
    ),
    (
        "null-objective-metric-name-with-strategies",
        lambda: replaced(
            "objectiveMetricName: loss",
            "objectiveMetricName: ~\n    metricStrategies: [{name: acc, value: max}]",
        ),
        "spec.objective.objectiveMetricName",
        "is required",
    ),
    (  # collectors match metric names exactly: a blank one crashed tunery run's collector
        "blank-additional-metric",
        lambda: replaced(
            "objectiveMetricName: loss",
            "objectiveMetricName: loss\n    additionalMetricNames: ['  ']",
        ),
        "spec.objective.additionalMetricNames[0]",
        "must not be empty",
    ),
    (
        "padded-objective-metric",
        lambda: replaced("objectiveMetricName: loss", "objectiveMetricName: ' loss'"),
        "spec.objective.objectiveMetricName",
        '" loss" must not begin or end with whitespace',
    ),
    (
        "nul-in-a-metric-name",
        lambda: replaced("objectiveMetricName: loss", 'objectiveMetricName: "lo\\0ss"'),
        "spec.objective.objectiveMetricName",
        "must not contain control characters",
    ),
    (
        "padded-constraint",
        lambda: replaced(
            "objectiveMetricName: loss", "objectiveMetricName: loss\n    constraints: ['c ']"
        ),
        "spec.objective.constraints[0]",
        '"c " must not begin or end with whitespace',
    ),
    (  # Katib's defaulting looked the type up in a dict: a list is unhashable
        "objective-type-a-list",
        lambda: replaced(
            "objectiveMetricName: loss",
            "objectiveMetricName: loss\n    objectives: [{name: loss, type: []}, "
            "{name: t, type: minimize}]",
        ),
        "spec.objective.objectives[0].type",
        "is not a valid objective type",
    ),
    (
        "recursive-alias",
        lambda: BASE + "x: &x [1, *x]\n",
        "x[1]",
        "refers to a node that contains",
    ),
    ("undefined-alias", lambda: BASE + "x: *nowhere\n", "x", "is not defined before its use"),
    (
        "duplicate-key",
        lambda: replaced("maxTrialCount: 4", "maxTrialCount: 4\n  maxTrialCount: 40"),
        "spec.maxTrialCount",
        'duplicate key "maxTrialCount": each key may appear once (first at line 12, again at '
        "line 13, column 3)",
    ),
    (
        "duplicate-key-int-and-string",
        lambda: BASE + 'labels:\n  1: a\n  "1": b\n',
        'labels["1"]',
        "duplicate key",
    ),
    ("complex-key", lambda: BASE + "? [a, b]\n: c\n", "", "a mapping key must be a plain value"),
    ("python-tag", lambda: BASE + "x: !!python/object:os.system {}\n", "x", "is not supported"),
    ("binary-tag", lambda: BASE + "x: !!binary aGVsbG8=\n", "x", "tag:yaml.org,2002:binary"),
    ("custom-tag", lambda: BASE + "x: !vault secret\n", "x", "the YAML tag !vault"),
    (
        "infinity-in-trial-spec",
        lambda: replaced(
            "restartPolicy: Never", "restartPolicy: Never\n            priority: .inf"
        ),
        "spec.trialTemplate.trialSpec.spec.template.spec.priority",
        "inf is not a finite number",
    ),
    ("nan-goal", lambda: replaced("type: minimize", "type: minimize\n    goal: .nan"), "", "nan"),
    (
        "bad-timestamp",
        lambda: BASE + "x: 2024-13-45\n",
        "x",
        '"2024-13-45" is not a valid timestamp',
    ),
    (
        "indentation",
        lambda: replaced("  objective:\n    type", "  objective:\n   type"),
        "",
        "invalid YAML at line 8, column 24: mapping values are not allowed",
    ),
    (
        "tab-indentation",
        lambda: replaced("  parallelTrialCount", "\tparallelTrialCount"),
        "",
        "line 11",
    ),
    (
        "range-overflows",
        lambda: replaced('min: "0.01"', 'min: "-1.7e308"').replace('max: "0.5"', 'max: "1.7e308"'),
        "spec.parameters[0].feasibleSpace",
        "is too wide to sample: max - min overflows a double",
    ),
    (
        "step-underflows",
        lambda: replaced('max: "0.5"', 'max: "0.5"\n        step: "1e-320"'),
        "spec.parameters[0].feasibleSpace.step",
        "is too small for the range",
    ),
    (
        "int-bound-over-2**53",
        lambda: (
            replaced("parameterType: double", "parameterType: int")
            .replace('min: "0.01"', 'min: "1"')
            .replace('max: "0.5"', 'max: "100000000000000000000"')
        ),
        "spec.parameters[0].feasibleSpace.max",
        "is out of range: int parameters lie within ±9007199254740992",
    ),
    (
        "env-string",
        lambda: container_field('                env: "A=1"\n'),
        CONTAINER + ".env",
        "is not a list of {name, value} entries",
    ),
    (
        "env-value-int",
        lambda: container_field("                env: [{name: A, value: 1}]\n"),
        CONTAINER + ".env[0].value",
        "1 is not a string (Kubernetes takes strings here: quote it)",
    ),
    (
        "env-name-missing",
        lambda: container_field('                env: [{value: "1"}]\n'),
        CONTAINER + ".env[0].name",
        "is required",
    ),
    (
        "env-unknown-field",
        lambda: container_field('                env: [{name: A, vaule: "1"}]\n'),
        CONTAINER + ".env[0].vaule",
        'unknown field (allowed here: name, value, valueFrom); did you mean "value"?',
    ),
    (
        "env-value-and-value-from",
        lambda: container_field('                env: [{name: A, value: "1", valueFrom: {}}]\n'),
        CONTAINER + ".env[0].valueFrom",
        "give either value or valueFrom, not both",
    ),
    (
        "nul-in-args",
        lambda: container_field('                args: ["a\\0b"]\n'),
        CONTAINER + ".args[0]",
        "must not contain a NUL character",
    ),
    (
        "nul-in-working-dir",
        lambda: container_field('                workingDir: "/tmp\\0x"\n'),
        CONTAINER + ".workingDir",
        "must not contain a NUL character",
    ),
    (
        "env-from-string",
        lambda: container_field("                envFrom: config\n"),
        CONTAINER + ".envFrom",
        '"config" is not a list',
    ),
    (
        "command-string",
        lambda: replaced(
            COMMAND_LINE, '                command: "python3 train.py ${trialParameters.lr}"\n'
        ),
        CONTAINER + ".command",
        "is not a list of strings",
    ),
    (
        "args-int",
        lambda: container_field("                args: [--epochs, 5]\n"),
        CONTAINER + ".args[1]",
        "5 is not a string",
    ),
    (
        "working-dir-list",
        lambda: container_field("                workingDir: [a]\n"),
        CONTAINER + ".workingDir",
        "is not a string",
    ),
    (
        "resources-list",
        lambda: container_field("                resources: {limits: [cpu]}\n"),
        CONTAINER + ".resources.limits",
        "is not a mapping of resource quantities",
    ),
    (
        "resources-unknown",
        lambda: container_field("                resources: {limit: {cpu: 1}}\n"),
        CONTAINER + ".resources.limit",
        'did you mean "limits"?',
    ),
    (
        "resources-quantity-map",
        lambda: container_field("                resources: {limits: {cpu: {a: 1}}}\n"),
        CONTAINER + ".resources.limits.cpu",
        "is not a quantity",
    ),
    (
        "gpu-not-whole",
        lambda: container_field('                resources: {limits: {nvidia.com/gpu: "abc"}}\n'),
        CONTAINER + '.resources.limits["nvidia.com/gpu"]',
        '"abc" is not a whole number of GPUs',
    ),
    (
        "gpu-fraction",
        lambda: container_field("                resources: {limits: {nvidia.com/gpu: 0.5}}\n"),
        CONTAINER + '.resources.limits["nvidia.com/gpu"]',
        "0.5 is not a whole number of GPUs",
    ),
    (
        "port-5000-digits",
        lambda: replaced(
            "  algorithm:",
            "  metricsCollectorSpec:\n    collector: {kind: PrometheusMetric}\n    source:\n"
            f'      httpGet: {{path: /m, port: "{"9" * 5000}"}}\n  algorithm:',
        ),
        "spec.metricsCollectorSpec.source.httpGet.port",
        "must be a port number from 1 to 65535",
    ),
    (
        "containers-not-list",
        lambda: replaced(
            "            containers:\n              - name: main\n                image: python\n"
            + COMMAND_LINE,
            "            containers: main\n",
        ),
        "spec.trialTemplate.trialSpec.spec.template.spec.containers",
        '"main" is not a list of containers',
    ),
    (
        "too-large",
        lambda: BASE + "x: " + "a" * MAX_DOCUMENT_BYTES + "\n",
        "",
        "Experiment documents are limited to 10485760 bytes",
    ),
    ("two-documents", lambda: BASE + "---\n" + BASE, "", "more than one document"),
    ("empty", lambda: b"", "", "the document is empty"),
    ("not-a-mapping", lambda: "- a\n- b\n", "", "must be a mapping"),
]


def _cycle() -> dict[str, Any]:
    data: dict[str, Any] = {"apiVersion": "kubeflow.org/v1beta1"}
    data["self"] = [data]
    return data


MAPPING_CASES: list[tuple[str, Callable[[], Any], str, str]] = [
    ("mapping-cycle", _cycle, "self[0].self[0]", "more than 100 levels deep"),
    ("mapping-bytes", lambda: {"spec": {"x": b"raw"}}, "spec.x", "is not a YAML/JSON value"),
    ("mapping-nan", lambda: {"spec": {"x": float("nan")}}, "spec.x", "is not a finite number"),
    ("mapping-huge-int", lambda: {"spec": {"x": 10**30}}, "spec.x", "out of range"),
    ("mapping-object-key", lambda: {"spec": {(1, 2): 1}}, "spec", "is not a string"),
]


def _load(source: Any) -> Any:
    if isinstance(source, bytes):
        return load_experiment(_write(source))
    return load_experiment(source)


_TMP: list[Path] = []


def _write(data: bytes) -> Path:
    path = _TMP[0] / f"doc-{len(list(_TMP[0].iterdir()))}.yaml"
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def _tmp(tmp_path: Path) -> Any:
    _TMP[:] = [tmp_path]
    yield


@pytest.mark.parametrize(
    ("make", "path", "fragment"),
    [pytest.param(m, p, f, id=i) for i, m, p, f in CASES + MAPPING_CASES],
)
def test_hostile_document_gets_a_clear_error(
    make: Callable[[], Any], path: str, fragment: str
) -> None:
    source = make()
    started = time.perf_counter()
    with pytest.raises(ExperimentError) as info:
        _load(source)
    assert time.perf_counter() - started < 5
    errors = info.value.errors
    text = str(info.value)
    assert fragment in text, text
    assert any(e.path.startswith(path) for e in errors), [e.path for e in errors]
    if path == "" and "line" in fragment:
        assert "line" in text and "column" in text


def test_grid_with_a_tiny_step_is_refused_without_enumerating() -> None:
    text = replaced("algorithmName: random", "algorithmName: grid").replace(
        'max: "0.5"', 'max: "0.5"\n        step: "1e-12"'
    )
    started = time.perf_counter()
    with pytest.raises(ExperimentError) as info:
        load_checked(text)
    assert time.perf_counter() - started < 2
    (error,) = info.value.errors
    assert error.path == "spec.parameters[0].feasibleSpace.step"
    assert "'lr' has 490000000001 grid values" in error.message
    assert f"at most {MAX_GRID_VALUES} values per parameter" in error.message


def test_grid_int_range_is_sized_arithmetically() -> None:
    text = (
        replaced("algorithmName: random", "algorithmName: grid")
        .replace("parameterType: double", "parameterType: int")
        .replace('min: "0.01"', 'min: "0"')
        .replace('max: "0.5"', 'max: "9000000000000000"')
    )
    with pytest.raises(ExperimentError) as info:
        load_checked(text)
    assert info.value.errors[0].path == "spec.parameters[0].feasibleSpace.max"


def test_grid_within_the_limit_is_accepted() -> None:
    text = replaced("algorithmName: random", "algorithmName: grid").replace(
        'max: "0.5"', 'max: "0.5"\n        step: "0.01"'
    )
    assert load_checked(text).name == "hostile"


def test_merge_keys_anchors_and_timestamps_still_work() -> None:
    text = replaced(
        "metadata:\n  name: hostile",
        "metadata:\n  name: hostile\n  annotations: &notes {team: ml, when: '2024'}\n"
        "  labels:\n    <<: *notes\n    team: research",
    ).replace("restartPolicy: Never", "restartPolicy: Never\n            created: 2024-01-02")
    experiment = load_experiment(text)
    assert experiment.metadata.labels == {"team": "research", "when": "2024"}
    spec = experiment.spec.trial_template.trial_spec
    assert spec is not None
    assert spec["spec"]["template"]["spec"]["created"] == "2024-01-02"


def test_a_document_at_the_value_limit_loads(tmp_path: Path) -> None:
    count = MAX_VALUES // 2 - 100  # a key and its value are two values
    names = "\n".join(f"    k{i}: v" for i in range(count))
    text = replaced(
        "metadata:\n  name: hostile", f"metadata:\n  name: hostile\n  annotations:\n{names}"
    )
    experiment = load_experiment(text)
    assert experiment.metadata.annotations is not None
    assert len(experiment.metadata.annotations) == count


def test_valid_utf8_with_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_experiment(path).name == "hostile"


# -- tunery validate ----------------------------------------------------------------------------

CLI_CASES = [
    "utf16-bom",
    "latin1",
    "deep-flow-nesting",
    "int-5000-digits",
    "alias-bomb",
    "duplicate-key",
    "indentation",
    "env-string",
    "count-over-int32",
    "range-overflows",
]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tunery.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tunery_validate_exits_2_with_a_location_and_no_traceback(tmp_path: Path) -> None:
    cases = {i: (m, p, f) for i, m, p, f in CASES}
    for name in CLI_CASES:
        make, path, fragment = cases[name]
        source = make()
        file = tmp_path / f"{name}.yaml"
        file.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8"))
        result = _cli(["validate", str(file)], tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (name, output)
        assert "Traceback" not in output, output
        assert fragment in output, (name, output)
        assert f"  {path}: " in output if path else "\n  : " not in output, (name, output)


def test_tunery_validate_grid_and_missing_file(tmp_path: Path) -> None:
    file = tmp_path / "grid.yaml"
    file.write_text(
        replaced("algorithmName: random", "algorithmName: grid").replace(
            'max: "0.5"', 'max: "0.5"\n        step: "1e-12"'
        )
    )
    result = _cli(["validate", str(file)], tmp_path)
    assert result.returncode == 2
    assert "spec.parameters[0].feasibleSpace.step: parameter 'lr'" in result.stderr
    result = _cli(["validate", str(tmp_path / "nope.yaml")], tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_tunery_run_refuses_an_over_int32_count(tmp_path: Path) -> None:
    file = tmp_path / "e.yaml"
    file.write_text(BASE)
    result = _cli(
        ["run", str(file), "--db", f"sqlite:///{tmp_path}/t.db", "--max-trials", "4294967296"],
        tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_tunery_run_of_an_invalid_document_stores_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    for name in ("env-string", "count-over-int32", "int-4000-digits"):
        make = {i: m for i, m, _, _ in CASES}[name]
        file = tmp_path / f"{name}.yaml"
        file.write_text(make())
        result = _cli(["run", str(file), "--db", db], tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
    listing = _cli(["list", "--db", db], tmp_path)
    assert listing.returncode == 0
    assert "no experiments" in listing.stdout
