"""Regret of tunery's TPE and GP on a conditional problem and a constrained one, beside optuna.

Not a test: a script that prints a table (issue 20 points 2 and 3). tunery's algorithms are
called in-process as the suggestion service calls them (one instance per experiment, the whole
history each time, one suggestion per call); optuna's samplers by ask/tell with the same
space (define-by-run for the conditional one, ``constraints_func`` for the constrained one).

    OMP_NUM_THREADS=1 python -m bench.conditional_constraints --seeds 10 --trials 60

Problems:

- ``conditional``: ``optimizer`` in {sgd, adam, rmsprop}; sgd has ``momentum`` and a log
  ``lr``, adam ``beta1`` and ``lr``, rmsprop ``decay``; the optimum (0) is in the sgd branch,
  adam's best is 0.3, rmsprop's 0.5, so a sampler must find the branch and tune its children.
- ``constrained``: Gardner et al. (2014)'s toy problem, minimise cos(2x)cos(y) + sin(x) on
  [0, 6]^2 subject to cos(x)cos(y) - sin(x)sin(y) <= 0.5 (optimum found by a dense grid). A
  run with no feasible trial scores the range of f as its regret.

Regret is best feasible value found minus the optimum, median [IQR] over seeds.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from suggestion.algorithms import get_algorithm  # noqa: E402
from suggestion.algorithms.base import SuggestRequest, parse_settings  # noqa: E402
from tunery.space import Distribution, Parameter, SearchSpace  # noqa: E402
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult  # noqa: E402

# -- problems -----------------------------------------------------------------------------------

CONDITIONAL = SearchSpace(
    (
        Parameter.categorical("optimizer", ["sgd", "adam", "rmsprop"]),
        Parameter.double("momentum", 0.0, 1.0).when("optimizer", "sgd"),
        Parameter.double("beta1", 0.5, 1.0).when("optimizer", "adam"),
        Parameter.double("decay", 0.0, 1.0).when("optimizer", "rmsprop"),
        Parameter.double("lr", 1e-5, 1.0, distribution=Distribution.LOG_UNIFORM),
    )
)


def conditional_value(a: dict) -> tuple[float, tuple[float, ...]]:
    lr = math.log10(a["lr"])  # in [-5, 0]
    if a["optimizer"] == "sgd":
        return (a["momentum"] - 0.9) ** 2 * 4 + ((lr + 1.5) / 2.5) ** 2, ()
    if a["optimizer"] == "adam":
        return 0.3 + (a["beta1"] - 0.9) ** 2 * 4 + ((lr + 3.0) / 2.5) ** 2, ()
    return 0.5 + (a["decay"] - 0.5) ** 2 + ((lr + 2.0) / 2.5) ** 2, ()


CONSTRAINED = SearchSpace((Parameter.double("x", 0.0, 6.0), Parameter.double("y", 0.0, 6.0)))


def constrained_value(a: dict) -> tuple[float, tuple[float, ...]]:
    x, y = a["x"], a["y"]
    f = math.cos(2 * x) * math.cos(y) + math.sin(x)
    c = math.cos(x) * math.cos(y) - math.sin(x) * math.sin(y) - 0.5
    return f, (c,)


def _constrained_optimum() -> tuple[float, float]:
    g = np.linspace(0.0, 6.0, 3001)
    x, y = np.meshgrid(g, g)
    f = np.cos(2 * x) * np.cos(y) + np.sin(x)
    c = np.cos(x) * np.cos(y) - np.sin(x) * np.sin(y) - 0.5
    return float(f[c <= 0].min()), float(f.max() - f.min())


Evaluate = Callable[[dict], tuple[float, tuple[float, ...]]]

# -- runners ------------------------------------------------------------------------------------


def run_tunery(
    algorithm: str,
    space: SearchSpace,
    evaluate: Evaluate,
    constrained: bool,
    trials: int,
    seed: int,
) -> list[tuple[float, tuple[float, ...]]]:
    cls = get_algorithm(algorithm)
    instance = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, algorithm))
    objective = Objective(ObjectiveType.MINIMIZE, "f", constraints=("c",) if constrained else ())
    history: list[TrialResult] = []
    out = []
    for i in range(trials):
        (a,) = instance.suggest(SuggestRequest(space, objective, list(history), 1, "bench"))
        value, cons = evaluate(a)
        history.append(TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, value, cons))
        out.append((value, cons))
    return out


def run_optuna(
    sampler_name: str, problem: str, evaluate: Evaluate, trials: int, seed: int
) -> list[tuple[float, tuple[float, ...]]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    constrained = problem == "constrained"
    kwargs = {"constraints_func": lambda t: t.user_attrs["c"]} if constrained else {}
    if sampler_name == "optuna-tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, **kwargs)
    elif sampler_name == "optuna-gp":
        sampler = optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False, **kwargs)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    out = []
    for _ in range(trials):
        trial = study.ask()
        if constrained:
            a = {"x": trial.suggest_float("x", 0.0, 6.0), "y": trial.suggest_float("y", 0.0, 6.0)}
        else:
            opt = trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
            a = {"optimizer": opt}
            if opt == "sgd":
                a["momentum"] = trial.suggest_float("momentum", 0.0, 1.0)
            elif opt == "adam":
                a["beta1"] = trial.suggest_float("beta1", 0.5, 1.0)
            else:
                a["decay"] = trial.suggest_float("decay", 0.0, 1.0)
            a["lr"] = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        value, cons = evaluate(a)
        trial.set_user_attr("c", list(cons))
        study.tell(trial, value)
        out.append((value, cons))
    return out


def best_feasible(results: list[tuple[float, tuple[float, ...]]], penalty: float) -> float:
    feasible = [v for v, c in results if all(x <= 0 for x in c)]
    return min(feasible) if feasible else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--optuna-gp", action="store_true", help="also optuna's GPSampler")
    args = parser.parse_args()
    optimum, span = _constrained_optimum()
    problems = {
        "conditional": (CONDITIONAL, conditional_value, 0.0, 2.0),
        "constrained": (CONSTRAINED, constrained_value, optimum, span),
    }
    methods = ["tpe", "bayesianoptimization", "random", "optuna-tpe", "optuna-random"]
    if args.optuna_gp:
        methods.append("optuna-gp")
    checkpoints = sorted({min(20, args.trials), args.trials})
    print(f"regret (best feasible - optimum), median [IQR] over {args.seeds} seeds")
    print(
        f"{'problem':<12} {'method':<22} " + " ".join(f"{'@' + str(c):>22}" for c in checkpoints)
    )
    for problem, (space, evaluate, best, penalty) in problems.items():
        for method in methods:
            started = time.perf_counter()
            regrets: dict[int, list[float]] = {c: [] for c in checkpoints}
            for seed in range(args.seeds):
                if method.startswith("optuna"):
                    results = run_optuna(method, problem, evaluate, args.trials, seed)
                else:
                    results = run_tunery(
                        method, space, evaluate, problem == "constrained", args.trials, seed
                    )
                for c in checkpoints:
                    found = best_feasible(results[:c], penalty)
                    regrets[c].append(penalty if math.isinf(found) else found - best)
            cells = []
            for c in checkpoints:
                q1, med, q3 = np.percentile(regrets[c], [25, 50, 75])
                cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]")
            elapsed = time.perf_counter() - started
            label = f"{method} ({elapsed:.0f}s)"
            print(f"{problem:<12} {label:<22} " + " ".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
