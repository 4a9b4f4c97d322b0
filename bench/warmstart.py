"""Warm start (issue 20 point 4): what results imported from an earlier experiment buy.

For each problem and seed, an earlier experiment is simulated by ``--warm`` random-search
results (numpy, seed + 1000). They are imported into a fresh experiment with
``tunery.seeding.warm_start`` (a SQLite store in a temporary folder, the code path of
``tunery run --warm-start``), and the algorithm then runs ``--budget`` trials, driven as the
controller drives it (``controller.protos.suggestions_request`` from the stored trials, batch 1,
in-process ``SuggestionService``). "cold" runs the same algorithm and seed without them.
Reported: median simple regret over seeds of the best value among the trials *run* (warm-start
results excluded) after 5, 10 and 20 trials, and of the imported results alone.

Usage::

    OMP_NUM_THREADS=1 python -m bench.warmstart                 # tpe, Branin and Hartmann6
    python -m bench.warmstart --algorithms tpe,multivariate-tpe --seeds 10 --warm 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.problems import PROBLEMS, Problem
from bench.quality import experiment_name, experiment_spec

CHECKPOINTS = (5, 10, 20)


def random_results(problem: Problem, seed: int, count: int) -> list[Any]:
    from tunery.seeding import Result

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        u = rng.random(len(problem.dimensions))
        point = {d.name: d.from_unit(float(x)) for d, x in zip(problem.dimensions, u, strict=True)}
        out.append(Result(point, {"loss": problem.evaluate(point)}, source=f"earlier trial {i}"))
    return out


def run(problem: Problem, algorithm: str, seed: int, budget: int, warm: int) -> list[float]:
    """The values of the ``budget`` trials run (after ``warm`` imported results)."""
    from controller.protos import suggestions_request
    from suggestion.service import SuggestionService
    from tunery.seeding import warm_start
    from tunery.store import open_store
    from tunery.store.base import TrialRecord
    from tunery.trials import TrialCondition

    name = experiment_name(problem, algorithm, seed)
    spec = experiment_spec(problem, algorithm, seed, budget)
    doc = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment"}
    doc |= {"metadata": {"name": name}, "spec": spec}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'w.db'}")
        try:
            store.create_experiment(name, doc)
            if warm:
                report = warm_start(store, name, random_results(problem, seed + 1000, warm))
                assert len(report.added) == warm, report.skipped
            records = store.list_trials(name)
        finally:
            store.close()
    suggest = SuggestionService().suggest
    values = []
    for i in range(budget):
        reply = suggest(suggestions_request(name, spec, records, 1))
        assignment = {a.name: a.value for a in reply.parameter_assignments[0].assignments}
        value = problem.evaluate({k: float(v) for k, v in assignment.items()})
        text = repr(value)
        records.append(
            TrialRecord(
                name=f"{name}-run-{i:04d}",
                experiment_name=name,
                assignment=assignment,
                condition=TrialCondition.SUCCEEDED,
                observation={
                    "metrics": [{"name": "loss", "min": text, "max": text, "latest": text}]
                },
            )
        )
        values.append(value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="branin,hartmann6")
    parser.add_argument("--algorithms", default="tpe")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--budget", type=int, default=max(CHECKPOINTS))
    args = parser.parse_args()
    print(
        f"| problem | algorithm | variant | imported best | "
        f"{' | '.join(f'regret@{c}' for c in CHECKPOINTS)} | s/run |"
    )
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in CHECKPOINTS) + " | --- |")
    for problem_name in args.problems.split(","):
        problem = PROBLEMS[problem_name]
        imported = [
            min(r.metrics["loss"] for r in random_results(problem, s + 1000, args.warm))
            - problem.f_star
            for s in range(args.seeds)
        ]
        for algorithm in args.algorithms.split(","):
            for variant, warm in (("cold", 0), (f"warm {args.warm}", args.warm)):
                regrets: dict[int, list[float]] = {c: [] for c in CHECKPOINTS}
                started = time.perf_counter()
                for seed in range(args.seeds):
                    values = run(problem, algorithm, seed, args.budget, warm)
                    for c in CHECKPOINTS:
                        regrets[c].append(min(values[:c]) - problem.f_star)
                per_run = (time.perf_counter() - started) / args.seeds
                shown = f"{statistics.median(imported):.3g}" if warm else "-"
                cells = " | ".join(f"{statistics.median(regrets[c]):.3g}" for c in CHECKPOINTS)
                print(
                    f"| {problem.name} | {algorithm} | {variant} | {shown} | {cells} | "
                    f"{per_run:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
