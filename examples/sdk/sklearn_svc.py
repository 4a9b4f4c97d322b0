"""Tune an SVM on scikit-learn's bundled breast-cancer data with tunery's Python SDK.

Run it (no download, about 15 s on 2 cores)::

    python examples/sdk/sklearn_svc.py

Each trial is a separate process that receives ``C`` and ``gamma`` as floats and ``kernel`` as
a str, and returns the 3-fold cross-validated accuracy, which TPE maximises. The experiment
(its trials, logs and metrics) stays in ``.tunery/``: ``tunery list``, ``tunery trials NAME``.
"""

from __future__ import annotations

import argparse

from tunery import search, tune


def cv_accuracy(params: dict) -> float:
    """Mean 3-fold accuracy of a scaled SVC; imports inside, as the trial is a fresh process."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(
        StandardScaler(), SVC(C=params["C"], gamma=params["gamma"], kernel=params["kernel"])
    )
    return float(cross_val_score(model, x, y, cv=params["folds"]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--name", default=None, help="experiment name (same name: resume)")
    args = parser.parse_args()

    result = tune(
        cv_accuracy,
        {
            "C": search.double(1e-2, 1e2, distribution="logUniform"),
            "gamma": search.double(1e-4, 1e-1, distribution="logUniform"),
            "kernel": search.categorical(["rbf", "sigmoid"]),
            "folds": 3,  # a constant: passed to every trial unchanged
        },
        name=args.name,
        objective_metric_name="accuracy",
        objective_type="maximize",
        algorithm_name="tpe",
        seed=0,  # the algorithm's seed (docs/sdk.md, "Reproducibility")
        max_trial_count=args.trials,
        parallel_trial_count=args.parallel,
        env_per_trial={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    print(f"best accuracy {result.best_value:.4f} with {result.best_parameters}")
    print(f"experiment {result.experiment_name}: {len(result.trials)} trials")


if __name__ == "__main__":
    main()
