"""The importance plot's forest fitted in a worker process gives the in-process result."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from tests.dashboard.conftest import NAME
from tunery.dashboard import api
from tunery.dashboard.worker import ForestWorker
from tunery.store import Store
from tunery.visualization import data

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork: fitted in-process"
)


def test_the_worker_fits_the_same_forest_and_falls_back_in_process() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(300, 3))
    target = features[:, 0] * 3 + features[:, 1] + rng.normal(0, 0.05, 300)
    expected = data.forest_importances(features, target)
    worker = ForestWorker()
    try:
        fitted = worker.fit(features, target)
        assert np.array_equal(fitted, expected)
        assert int(np.argmax(fitted)) == 0  # the feature the target depends on most
    finally:
        worker.close()
    assert np.array_equal(worker.fit(features, target), expected)  # in-process now


def test_importance_through_the_worker_is_the_plots_importance(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    in_process = data.load_snapshot(run_store, NAME)
    worker = ForestWorker()
    try:
        assert data.importance(snapshot, worker.fit) == data.importance(in_process)
    finally:
        worker.close()
    assert data.importance(snapshot)["importances"], "the example has parameter importances"


def test_the_first_screen_is_warmed_up_first() -> None:
    from tunery.dashboard.pages import PLOTS

    assert tuple(kind for kind, _ in PLOTS[:4]) == api.FIRST_SCREEN
