"""The SDK's public surface: lazy exports, docstrings on every public name, the error tree."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import tunery
from tunery import sdk, search
from tunery.sdk import errors as _sdk_errors


def test_import_tunery_stays_light() -> None:
    code = (
        "import sys, tunery; heavy = [m for m in ('tunery.sdk', 'sqlalchemy', 'grpc', "
        "'controller', 'pydantic', 'kubernetes', 'cloudpickle') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_sdk_names_are_exported_lazily() -> None:
    from tunery import Client, TuneResult, report_metrics, tune

    assert (tune, report_metrics, Client, TuneResult) == (
        sdk.tune,
        sdk.report_metrics,
        sdk.Client,
        sdk.TuneResult,
    )
    assert tunery.search is search
    assert dir(tunery) == sorted(tunery.__all__)  # no Any, annotations, importlib
    assert dir(sdk) == sorted(sdk.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tunery.nope  # noqa: B018


def _public(module: object) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in module.__all__]  # type: ignore[attr-defined]


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for module in (sdk, search):
        for name, value in _public(module):
            if not (inspect.getdoc(value) or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(value):
                for attr, member in vars(value).items():
                    if attr.startswith("_") or not (
                        callable(member) or isinstance(member, property)
                    ):
                        continue
                    if not (inspect.getdoc(member) or "").strip():
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert missing == []


def test_every_client_method_of_katib_is_there() -> None:
    katib = [
        "create_experiment",
        "get_experiment",
        "list_experiments",
        "get_experiment_conditions",
        "is_experiment_created",
        "is_experiment_running",
        "is_experiment_restarting",
        "is_experiment_succeeded",
        "is_experiment_failed",
        "wait_for_experiment_condition",
        "edit_experiment_budget",
        "delete_experiment",
        "list_trials",
        "get_trial",
        "get_optimal_hyperparameters",
        "get_trial_metrics",
    ]
    for method in katib:
        parameters = list(inspect.signature(getattr(sdk.Client, method)).parameters)
        assert parameters[:2] in (
            ["self", "name"],
            ["self", "experiment"],
            ["self", "namespace"],
        ) or (parameters[:2] == ["self", "experiment_name"]), method
        assert "namespace" in parameters, method
    wait = inspect.signature(sdk.Client.wait_for_experiment_condition).parameters
    assert wait["expected_condition"].default == "Succeeded"
    assert wait["timeout"].default == 600 and wait["polling_interval"].default == 15


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (sdk.InvalidArgumentError, ValueError),
        (sdk.InvalidExperimentError, ValueError),
        (sdk.ObjectiveSerializationError, TypeError),
        (sdk.NotFoundError, KeyError),
        (sdk.AlreadyExistsError, ValueError),
        (sdk.ExperimentFailedError, RuntimeError),
        (sdk.NoResultError, RuntimeError),
        (sdk.WaitTimeoutError, TimeoutError),
        (sdk.ReportMetricsError, RuntimeError),
        (sdk.DriverExitedError, RuntimeError),
        (sdk.BackendUnavailableError, ConnectionError),
        (sdk.UnsupportedError, NotImplementedError),
        (sdk.MissingDependencyError, ImportError),
    ],
)
def test_one_error_tree(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, sdk.TuneryError) and issubclass(error, builtin)
    assert error.__name__ in (_sdk_errors.__doc__ or "")  # drawn in the module docstring
    assert str(sdk.NotFoundError("experiment 'x' not found")) == "experiment 'x' not found"


def test_pytest_starts_without_deprecation_warnings() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestDeprecationWarning",
            "tests/test_style.py",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Deprecation" not in done.stdout + done.stderr


def test_sdk_errors_name_sdk_arguments_not_cli_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunery import tune
    from tunery.sdk import AlreadyExistsError

    monkeypatch.chdir(tmp_path)
    tune(lambda p: p["x"], {"x": search.discrete([1])}, name="taken", max_trial_count=1,
         algorithm_name="grid", verbose=False)  # fmt: skip
    with pytest.raises(AlreadyExistsError) as caught:
        tune(lambda p: p["x"], {"x": search.discrete([2])}, name="taken", max_trial_count=1,
             algorithm_name="grid", verbose=False)  # fmt: skip
    message = str(caught.value)
    assert "name= to tune()" in message and "Client().delete_experiment('taken')" in message
    assert "--" not in message and "tunery delete" not in message
