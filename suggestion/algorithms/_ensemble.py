"""Tree-ensemble surrogates for ``bayesianoptimization`` with ``base_estimator`` RF, ET or GBRT.

Private helper of ``suggestion.algorithms.bayesian``; imported only when a tree estimator is
asked for, so scikit-learn is needed only then. The models mirror scikit-optimize's choices
(Katib's backend): 100 trees with at least 3 samples a leaf for random forests (RF) and
extra trees (ET), quantile gradient boosting at the 16th/50th/84th percentiles for GBRT. The
predictive spread is the total standard deviation over the trees (the spread of their leaf
means plus each leaf's own variance, as scikit-optimize does) for RF and ET, or half the
16-84% quantile range for GBRT. Points are scored by the same acquisition functions as the GP
over a sampled pool (no gradients). Batches use a constant liar: each chosen point (and every
pending trial) enters the training set with the best score seen, then the model is refitted,
as skopt's default ``cl_min`` strategy does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from suggestion.algorithms._gp_acq import (
    AcquisitionKind,
    acquisition_values,
    candidate_pool,
)
from suggestion.algorithms._gp_space import UnitCube

_MIN_STD = 1e-6
_N_SAMPLES = 2048


class EnsembleProposer:
    """Proposes points by an acquisition on a tree ensemble's mean and spread."""

    def __init__(
        self,
        cube: UnitCube,
        x: np.ndarray,
        y: np.ndarray,
        fantasies: np.ndarray,
        base_estimator: str,
        kind: AcquisitionKind,
        seed: int,
        incumbents: np.ndarray,
    ) -> None:
        self.cube = cube
        self.base_estimator = base_estimator
        self.kind = kind
        self.seed = seed
        self.incumbents = incumbents
        self.best = float(np.max(y))
        self.x = np.vstack([x, fantasies]) if len(fantasies) else x
        self.y = np.concatenate([y, np.full(len(fantasies), self.best)])
        self._model: Any = None

    def _fit(self) -> Any:
        if self._model is None:
            self._model = _fit(self.base_estimator, self.x, self.y, self.seed)
        return self._model

    def predict(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _predict(self.base_estimator, self._fit(), c)

    def ranked(self, rng: np.random.Generator) -> np.ndarray:
        pool = candidate_pool(self.cube, rng, self.incumbents, _N_SAMPLES)
        mean, std = self.predict(pool)
        scores = acquisition_values(self.kind, mean, std, self.best)
        order = np.argsort(-scores, kind="stable")
        pool = pool[order]
        _, first = np.unique(pool, axis=0, return_index=True)
        return pool[np.sort(first)]

    def add(self, row: np.ndarray) -> None:
        self.x = np.vstack([self.x, row[None, :]])
        self.y = np.append(self.y, self.best)
        self._model = None


def _fit(base_estimator: str, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        RandomForestRegressor,
    )

    if base_estimator == "GBRT":
        models = []
        for alpha in (0.16, 0.5, 0.84):
            model = GradientBoostingRegressor(
                loss="quantile", alpha=alpha, n_estimators=30, random_state=seed
            )
            models.append(model.fit(x, y))
        return models
    cls = RandomForestRegressor if base_estimator == "RF" else ExtraTreesRegressor
    return cls(n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1).fit(x, y)


def _predict(base_estimator: str, model: Any, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if base_estimator == "GBRT":
        low, mid, high = (m.predict(c) for m in model)
        return mid, np.maximum(np.abs(high - low) / 2.0, _MIN_STD)
    # Law of total variance over the trees: each tree predicts its leaf's mean, and the
    # leaf's own spread (its impurity) is uncertainty the trees' agreement alone would hide.
    means = np.empty((len(model.estimators_), len(c)))
    second = np.zeros(len(c))
    for i, tree in enumerate(model.estimators_):
        leaves = tree.apply(c)
        means[i] = tree.tree_.value[leaves, 0, 0]
        second += tree.tree_.impurity[leaves] + means[i] ** 2
    mean = means.mean(axis=0)
    var = second / len(means) - mean**2
    return mean, np.sqrt(np.maximum(var, _MIN_STD**2))
