"""Registry, typed settings and Katib's validation messages for early stoppers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import earlystop
from earlystop import REGISTRY, get_early_stopper
from earlystop.base import (
    EarlyStopError,
    EarlyStopper,
    InvalidRequestError,
    InvalidSettingsError,
    NoStoreError,
    ObservationsUnavailableError,
    TrialNotFoundError,
    UnknownAlgorithmError,
    parse_settings,
)
from earlystop.medianstop import MedianStop, MedianStopSettings


def test_registry_keys_match_class_names() -> None:
    for name in REGISTRY:
        cls = get_early_stopper(name)
        assert issubclass(cls, EarlyStopper)
        assert cls.name == name


def test_every_stopper_module_is_registered() -> None:
    registered = {target.partition(":")[0] for target in REGISTRY.values()}
    for info in pkgutil.iter_modules(earlystop.__path__):
        module = importlib.import_module(f"earlystop.{info.name}")
        defines_stopper = any(
            issubclass(obj, EarlyStopper) and obj is not EarlyStopper
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if obj.__module__ == module.__name__
        )
        if defines_stopper:
            assert module.__name__ in registered, f"{module.__name__} is not in REGISTRY"


def test_unknown_algorithm_uses_katibs_message_and_lists_names() -> None:
    with pytest.raises(UnknownAlgorithmError) as info:
        get_early_stopper("mediansop")
    assert str(info.value) == "unknown algorithm name mediansop; available: asha, medianstop"
    assert isinstance(info.value, LookupError)


def test_defaults_are_katibs() -> None:
    settings = MedianStop().settings
    assert settings == MedianStopSettings(min_trials_required=3, start_step=4)
    assert settings.as_pairs() == (("min_trials_required", "3"), ("start_step", "4"))


def test_settings_parse_from_katib_strings() -> None:
    stopper = MedianStop.from_settings({"min_trials_required": "5", "start_step": "1"})
    assert stopper.settings == MedianStopSettings(5, 1)
    assert MedianStop.from_settings([("start_step", " 7 ")]).settings.start_step == 7
    assert MedianStop.from_settings({"start_step": "2.0"}).settings.start_step == 2
    assert MedianStop.from_settings(MedianStopSettings(2, 3).as_pairs()).settings == (
        MedianStopSettings(2, 3)
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"min_trial_required": "3"},
            "unknown setting min_trial_required for algorithm medianstop",
        ),
        ({"min_trials_required": "0"}, "min_trials_required must be greater than zero (>0)"),
        ({"min_trials_required": "-2"}, "min_trials_required must be greater than zero (>0)"),
        ({"start_step": "0"}, "start_step must be greater or equal than one (>=1)"),
        ({"start_step": "-1"}, "start_step must be greater or equal than one (>=1)"),
        ({"start_step": "abc"}, "failed to validate start_step(abc): must be an integer"),
        ({"start_step": "2.5"}, "failed to validate start_step(2.5): must be an integer"),
        (
            {"min_trials_required": ""},
            "failed to validate min_trials_required(): must be an integer",
        ),
        ([("start_step", "2"), ("start_step", "3")], "setting start_step is given more than once"),
    ],
)
def test_invalid_settings_give_katibs_messages(raw: object, message: str) -> None:
    with pytest.raises(InvalidSettingsError) as info:
        MedianStop.from_settings(raw)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [{"start_step": 2.5}, {"start_step": True}, {"min_trials_required": "3"}],
)
def test_settings_reject_wrong_python_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidSettingsError, match="must be an integer"):
        MedianStopSettings(**kwargs)  # type: ignore[arg-type]


def test_stopper_rejects_foreign_settings_type() -> None:
    from earlystop.base import EarlyStoppingSettings

    with pytest.raises(InvalidSettingsError, match="medianstop needs MedianStopSettings"):
        MedianStop(EarlyStoppingSettings())


def test_parse_settings_is_generic() -> None:
    assert parse_settings(MedianStopSettings, {}, "medianstop") == MedianStopSettings()


def test_error_tree() -> None:
    for cls in (
        InvalidSettingsError,
        UnknownAlgorithmError,
        InvalidRequestError,
        TrialNotFoundError,
        NoStoreError,
        ObservationsUnavailableError,
    ):
        assert issubclass(cls, EarlyStopError)
    assert issubclass(TrialNotFoundError, KeyError)
    assert str(TrialNotFoundError("trial t not found")) == "trial t not found"  # not quoted
