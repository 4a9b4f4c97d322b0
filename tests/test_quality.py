"""Regression guard for optimisation quality: model-based algorithms must beat random search.

A small, seeded slice of ``bench.quality`` (shared/benchmarks.md §2): Branin, driven through the
SuggestionService in-process with the controller's own requests (every trial so far, batch 1),
the same seeds for every algorithm. Deterministic: a failure means an algorithm changed, not
noise. The full comparison with optuna, hyperopt and the GP libraries is ``bench/quality.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bench.problems import PROBLEMS
from bench.quality import run_random, run_tunery_inprocess
from suggestion.algorithms import REGISTRY

BRANIN = PROBLEMS["branin"]
MARGIN = 0.5
"""A model-based algorithm's median regret must be below half of random search's."""

# algorithm -> (trials, seeds); the GP converges in fewer trials and costs more per trial.
CASES = {
    "tpe": (60, 10),
    "multivariate-tpe": (60, 10),
    "bayesianoptimization": (30, 5),
}


def median_regret(values_per_seed: list[list[float]]) -> float:
    return float(np.median([min(v) - BRANIN.f_star for v in values_per_seed]))


@functools.cache
def random_search_regret(trials: int, seeds: int) -> float:
    return median_regret([run_tunery_inprocess(BRANIN, "random", s, trials) for s in range(seeds)])


def beats(model_based: float, random: float) -> bool:
    return model_based < MARGIN * random


@pytest.mark.parametrize("algorithm", list(CASES))
def test_model_based_algorithm_beats_random_search_on_branin(algorithm: str) -> None:
    if algorithm not in REGISTRY:
        pytest.skip(f"{algorithm} is not registered in suggestion.algorithms.REGISTRY")
    trials, seeds = CASES[algorithm]
    ours = median_regret(
        [run_tunery_inprocess(BRANIN, algorithm, s, trials) for s in range(seeds)]
    )
    random = random_search_regret(trials, seeds)
    assert beats(ours, random), (
        f"{algorithm} no longer beats random search on Branin: median simple regret after "
        f"{trials} trials over {seeds} seeds is {ours:.4g}, random search's is {random:.4g} "
        f"(must be below {MARGIN} x that)"
    )


def test_the_criterion_separates_random_from_random() -> None:
    """Two random searches (tunery's and numpy's) do not pass as 'beating' each other, so the
    test above can fail."""
    trials, seeds = CASES["tpe"]
    ours = median_regret([run_tunery_inprocess(BRANIN, "random", s, trials) for s in range(seeds)])
    numpy = median_regret([run_random(BRANIN, s, trials) for s in range(seeds)])
    assert not beats(ours, numpy)
    assert not beats(numpy, ours)


def test_the_benchmark_sees_the_same_trials_over_grpc_as_in_process() -> None:
    """bench.quality drives the gRPC server; this test uses the service in-process: both see
    the controller's requests, so both must produce the same trials."""
    from bench.quality import run_tunery_grpc

    assert run_tunery_grpc(BRANIN, "tpe", 3, 15) == run_tunery_inprocess(BRANIN, "tpe", 3, 15)
