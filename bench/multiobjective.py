"""Multi-objective quality: hypervolume after 100 and 200 trials on bi-objective problems,
tunery's ``nsga2``, ``motpe`` and ``parego`` beside optuna's ``NSGAIISampler``,
``TPESampler`` and ``GPSampler`` called directly, with the same seeds.

Called as ``python -m bench.multiobjective``; recorded in docs/benchmarks.md. tunery's
algorithms run in-process (the algorithm class given a ``SuggestRequest`` with every trial so
far and their ``values``, one suggestion per request, ``random_state`` = seed), exactly what
the suggestion service hands them. Optuna samplers use their defaults (seed = seed).

Problems (all objectives minimised; hypervolume of the non-dominated trials w.r.t. a fixed
reference point, higher is better):

- ``zdt1``, ``zdt2``: Zitzler-Deb-Thiele with ``--dims`` (10) variables in [0, 1];
  reference (11, 11);
- ``dtlz2``: two objectives, 6 variables in [0, 1]; reference (1.1, 1.1);
- ``mixed``: a ZDT1-shaped problem over mixed types: x1 double, x2..x4 doubles, an int
  ``k`` in [0, 8] and a categorical ``c`` in {a, b, c} that add ``k/8`` and an offset
  (0, 0.5, 1) to ``g``; reference (11, 11).

Usage::

    python -m bench.multiobjective --seeds 10 --workers 2
    python -m bench.multiobjective --problems zdt1 --methods "tunery nsga2" --seeds 3
"""

from __future__ import annotations

import os

if __name__ in ("__main__", "__mp_main__"):  # pin math libraries before numpy loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunery.pareto import hypervolume
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveTerm, ObjectiveType, TrialCondition, TrialResult

Values = tuple[float, float]


@dataclass(frozen=True)
class MoProblem:
    name: str
    space: SearchSpace
    evaluate: Callable[[Mapping[str, Any]], Values]
    reference: Values


def _zdt_g(xs: Sequence[float]) -> float:
    return 1.0 + 9.0 * sum(xs) / len(xs)


def zdt1(p: Mapping[str, Any], d: int) -> Values:
    x = [float(p[f"x{i}"]) for i in range(d)]
    g = _zdt_g(x[1:])
    return x[0], g * (1 - math.sqrt(x[0] / g))


def zdt2(p: Mapping[str, Any], d: int) -> Values:
    x = [float(p[f"x{i}"]) for i in range(d)]
    g = _zdt_g(x[1:])
    return x[0], g * (1 - (x[0] / g) ** 2)


def dtlz2(p: Mapping[str, Any], d: int = 6) -> Values:
    x = [float(p[f"x{i}"]) for i in range(d)]
    g = sum((v - 0.5) ** 2 for v in x[1:])
    return (1 + g) * math.cos(x[0] * math.pi / 2), (1 + g) * math.sin(x[0] * math.pi / 2)


_OFFSET = {"a": 0.0, "b": 0.5, "c": 1.0}


def mixed(p: Mapping[str, Any]) -> Values:
    x1 = float(p["x0"])
    rest = [float(p[f"x{i}"]) for i in (1, 2, 3)] + [int(p["k"]) / 8, _OFFSET[str(p["c"])]]
    g = _zdt_g(rest)
    return x1, g * (1 - math.sqrt(x1 / g))


def _cube(d: int) -> SearchSpace:
    return SearchSpace(tuple(Parameter.double(f"x{i}", 0.0, 1.0) for i in range(d)))


def problems(dims: int) -> dict[str, MoProblem]:
    mixed_space = SearchSpace(
        (
            *(Parameter.double(f"x{i}", 0.0, 1.0) for i in range(4)),
            Parameter.integer("k", 0, 8),
            Parameter.categorical("c", ["a", "b", "c"]),
        )
    )
    return {
        "zdt1": MoProblem("zdt1", _cube(dims), lambda p: zdt1(p, dims), (11.0, 11.0)),
        "zdt2": MoProblem("zdt2", _cube(dims), lambda p: zdt2(p, dims), (11.0, 11.0)),
        "dtlz2": MoProblem("dtlz2", _cube(6), dtlz2, (1.1, 1.1)),
        "mixed": MoProblem("mixed", mixed_space, mixed, (11.0, 11.0)),
    }


OURS = {"tunery nsga2": "nsga2", "tunery motpe": "motpe", "tunery parego": "parego"}
THEIRS = ("optuna NSGAII", "optuna TPE", "optuna GP")
PAIRS = {
    "tunery nsga2": "optuna NSGAII",
    "tunery motpe": "optuna TPE",
    "tunery parego": "optuna GP",
}


def run_tunery(problem: MoProblem, algorithm: str, seed: int, budget: int) -> list[Values]:
    from suggestion.algorithms import get_algorithm
    from suggestion.algorithms.base import SuggestRequest, parse_settings

    cls = get_algorithm(algorithm)
    algo = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, algorithm))
    objective = Objective(
        ObjectiveType.MINIMIZE,
        "f1",
        additional_metric_names=("f2",),
        extra_objectives=(ObjectiveTerm("f2", ObjectiveType.MINIMIZE),),
    )
    trials: list[TrialResult] = []
    out: list[Values] = []
    for i in range(budget):
        request = SuggestRequest(problem.space, objective, list(trials), 1, f"mo-{seed}", budget)
        (assignment,) = algo.suggest(request)
        values = problem.evaluate(assignment)
        out.append(values)
        trials.append(
            TrialResult(f"t{i}", assignment, TrialCondition.SUCCEEDED, values[0], values)
        )
    return out


def run_optuna(problem: MoProblem, method: str, seed: int, budget: int) -> list[Values]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = {
        "optuna NSGAII": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "optuna TPE": lambda: optuna.samplers.TPESampler(seed=seed),
        "optuna GP": lambda: optuna.samplers.GPSampler(seed=seed),
    }[method]()
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    out: list[Values] = []

    def objective(trial: optuna.Trial) -> Values:
        p: dict[str, Any] = {}
        for param in problem.space:
            if param.type.value == "double":
                p[param.name] = trial.suggest_float(param.name, param.low, param.high)
            elif param.type.value == "int":
                p[param.name] = trial.suggest_int(param.name, param.low, param.high)
            else:
                p[param.name] = trial.suggest_categorical(param.name, list(param.values))
        values = problem.evaluate(p)
        out.append(values)
        return values

    study.optimize(objective, n_trials=budget)
    return out


def run_one(task: tuple[str, str, int, int, int]) -> dict[str, Any]:
    problem_name, method, seed, budget, dims = task
    problem = problems(dims)[problem_name]
    started = time.perf_counter()
    if method in OURS:
        values = run_tunery(problem, OURS[method], seed, budget)
    else:
        values = run_optuna(problem, method, seed, budget)
    elapsed = time.perf_counter() - started
    hv = {
        n: hypervolume(np.asarray(values[:n]), problem.reference)
        for n in (100, 200)
        if n <= len(values)
    }
    return {
        "problem": problem_name,
        "method": method,
        "seed": seed,
        "hv": hv,
        "seconds": elapsed,
    }


def table(results: Sequence[dict[str, Any]], methods: Sequence[str], probs: Sequence[str]) -> str:
    lines = [
        "| problem | trials | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for prob in probs:
        for n in (100, 200):
            cells = []
            for m in methods:
                hv = [
                    r["hv"][n]
                    for r in results
                    if r["problem"] == prob and r["method"] == m and n in r["hv"]
                ]
                cells.append(f"{np.median(hv):.4f}" if hv else "-")
            lines.append(f"| {prob} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| problem | pair (ours vs optuna) | HV@100 median [IQR] | HV@200 median [IQR] "
        "| seeds | verdict |"
    )
    lines.append("|---|---|---|---|---|---|")
    for prob in probs:
        for ours, theirs in PAIRS.items():
            if ours not in methods or theirs not in methods:
                continue
            q: dict[tuple[str, int], np.ndarray] = {}
            seeds = {}
            for m in (ours, theirs):
                for n in (100, 200):
                    hv = [
                        r["hv"][n]
                        for r in results
                        if r["problem"] == prob and r["method"] == m and n in r["hv"]
                    ]
                    q[m, n] = np.percentile(hv, [25, 50, 75]) if hv else np.full(3, math.nan)
                    seeds[m] = len(hv) if n == 100 else seeds[m]
            if any(seeds[m] == 0 for m in (ours, theirs)):
                continue
            # budgets both methods reached (``--budget 100`` stops before 200)
            both = [n for n in (100, 200) if not np.isnan(q[ours, n][1] + q[theirs, n][1])]
            ok = all(q[ours, n][1] >= q[theirs, n][1] for n in both)
            within = all(q[ours, n][1] >= q[theirs, n][0] for n in both)
            verdict = ">=" if ok else ("below, within IQR" if within else "below")

            def cell(m: str, n: int, q: dict[tuple[str, int], np.ndarray] = q) -> str:
                lo, mid, hi = q[m, n]
                return "-" if np.isnan(mid) else f"{mid:.4f} [{lo:.4f}, {hi:.4f}]"

            lines.append(
                f"| {prob} | {ours} vs {theirs} | {cell(ours, 100)} vs {cell(theirs, 100)} "
                f"| {cell(ours, 200)} vs {cell(theirs, 200)} | {seeds[ours]} / {seeds[theirs]} "
                f"| {verdict} |"
            )
    lines.append("")
    lines.append("| method | median seconds per run |")
    lines.append("|---|---|")
    for m in methods:
        secs = [r["seconds"] for r in results if r["method"] == m]
        if secs:
            lines.append(f"| {m} | {np.median(secs):.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="zdt1,zdt2,dtlz2,mixed")
    parser.add_argument("--methods", default=",".join([*OURS, *THEIRS]))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument(
        "--merge", default="", help="comma-separated JSON files of earlier runs to tabulate too"
    )
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--dims", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="write every run's result here")
    args = parser.parse_args(argv)
    probs = [p for p in args.problems.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(p, m, s, args.budget, args.dims) for s in seeds for p in probs for m in methods]
    results: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    for path in filter(None, args.merge.split(",")):
        with open(path) as f:
            merged += [r | {"hv": {int(k): v for k, v in r["hv"].items()}} for r in json.load(f)]
    unique = {(r["problem"], r["method"], r["seed"]): r for r in reversed(merged)}
    merged = list(reversed(unique.values()))  # a (problem, method, seed) run counts once
    if merged:
        methods = list(dict.fromkeys([*methods, *(r["method"] for r in merged)]))
    with ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(run_one, tasks):
            results.append(r)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f)
    print(table([*merged, *results], methods, probs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
