"""tpe and multivariate-tpe propose as optuna's TPESampler does, given the same history.

The Parzen densities are compared with optuna's to 1e-9 in test_suggestion_parzen.py; this
checks the whole step (split, weights, candidates, choice) end to end, through the public
APIs: the same history of 120 completed trials over two log-uniform parameters (the SVC task of
bench/quality.py), with tied values (a plateau, as in that task), is given to our algorithm and
to optuna's ``TPESampler`` with 300 seeds each, and the proposals of each parameter must come
from the same distribution (two-sample Kolmogorov-Smirnov). Deterministic: fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from suggestion.algorithms import get_algorithm
from suggestion.algorithms.base import SuggestRequest, parse_settings
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

optuna = pytest.importorskip("optuna")

HISTORY = 120
SAMPLES = 300
BOUNDS = {"C": (1e-3, 1e3), "gamma": (1e-5, 1.0)}


def history() -> list[tuple[dict[str, float], float]]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(HISTORY):
        log_c, log_g = rng.uniform(-3, 3), rng.uniform(-5, 0)
        # a plateau of exactly tied values for large C, a slope elsewhere
        value = 0.332 if log_c > 0.5 else 0.34 + 0.01 * abs(log_g + 3) + 0.001 * abs(log_c)
        out.append(({"C": 10**log_c, "gamma": 10**log_g}, value))
    return out


def ours(algorithm: str) -> np.ndarray:
    space = SearchSpace(
        tuple(
            Parameter.double(name, lo, hi, distribution="logUniform")
            for name, (lo, hi) in BOUNDS.items()
        )
    )
    trials = tuple(
        TrialResult(f"t{i}", params, TrialCondition.SUCCEEDED, value)
        for i, (params, value) in enumerate(history())
    )
    cls = get_algorithm(algorithm)
    proposals = []
    for seed in range(SAMPLES):
        algo = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, algorithm))
        objective = Objective(ObjectiveType.MINIMIZE, "loss")
        [a] = algo.suggest(SuggestRequest(space, objective, trials, 1, experiment_name="ks"))
        proposals.append([math.log10(a["C"]), math.log10(a["gamma"])])
    return np.array(proposals)


def optunas(multivariate: bool) -> np.ndarray:
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = {name: FloatDistribution(lo, hi, log=True) for name, (lo, hi) in BOUNDS.items()}
    done = [
        optuna.trial.create_trial(params=params, distributions=dists, value=value)
        for params, value in history()
    ]
    proposals = []
    for seed in range(SAMPLES):
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
        study = optuna.create_study(sampler=sampler)
        study.add_trials(done)
        trial = study.ask(dists)
        proposals.append([math.log10(trial.params["C"]), math.log10(trial.params["gamma"])])
    return np.array(proposals)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(
    ("algorithm", "multivariate"), [("tpe", False), ("multivariate-tpe", True)]
)
def test_proposals_follow_optunas_distribution(algorithm: str, multivariate: bool) -> None:
    a, b = ours(algorithm), optunas(multivariate)
    for j, name in enumerate(BOUNDS):
        p = ks_2samp(a[:, j], b[:, j]).pvalue
        assert p > 0.01, (
            f"{algorithm}: log10 {name} proposals differ from optuna's (KS p={p:.2g}; "
            f"quartiles {np.percentile(a[:, j], [25, 50, 75]).round(3)} vs "
            f"{np.percentile(b[:, j], [25, 50, 75]).round(3)})"
        )


def test_the_check_can_fail() -> None:
    """A different rule (here: plain random search) is told apart by the same check."""
    a, b = ours("random"), optunas(multivariate=False)
    assert min(ks_2samp(a[:, j], b[:, j]).pvalue for j in range(2)) < 1e-6
