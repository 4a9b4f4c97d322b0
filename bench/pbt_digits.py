"""pbt against random search at the same epoch budget, on an MLP learning scikit-learn's digits.

Run: ``OMP_NUM_THREADS=1 python -m bench.pbt_digits [--seeds 5]`` (needs torch). Trains in
this process (no trial processes: the point is the algorithm, not the controller), epoch by
epoch, with the real :class:`suggestion.algorithms.pbt.Pbt` driving the population: each
generation asks for ``population`` members, trains each ``epochs_per_trial`` epochs from its
parent's checkpoint (model and optimizer state, kept in memory by trial name), and reports the
validation accuracy after the slice. Random search spends the same number of epochs on
``population`` configurations trained the full length (generations x epochs per trial) each.
Both search SGD's learning rate (log-uniform) and momentum; the same seeds for both. Prints the
best final accuracy per seed and the medians as a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from suggestion.algorithms.base import SuggestRequest, parse_settings
from suggestion.algorithms.pbt import Pbt, PbtSettings
from tunery.space import Distribution, Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

SPACE = SearchSpace(
    (
        Parameter.double("lr", 0.0005, 0.5, distribution=Distribution.LOG_UNIFORM),
        Parameter.double("momentum", 0.0, 0.95),
    )
)
OBJECTIVE = Objective(ObjectiveType.MAXIMIZE, "accuracy")


class Task:
    def __init__(self) -> None:
        x, y = load_digits(return_X_y=True)
        xt, xv, yt, yv = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
        self.xt, self.xv = (torch.tensor(a, dtype=torch.float32) for a in (xt, xv))
        self.yt, self.yv = (torch.tensor(a, dtype=torch.long) for a in (yt, yv))

    def new(self, seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        return {"model": model, "optimizer": optimizer, "epoch": 0}

    def train(self, state: dict[str, Any], lr: float, momentum: float, epochs: int) -> float:
        model, optimizer = state["model"], state["optimizer"]
        for group in optimizer.param_groups:
            group["lr"], group["momentum"] = lr, momentum
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            state["epoch"] += 1
            generator = torch.Generator().manual_seed(state["epoch"])
            model.train()
            order = torch.randperm(len(self.xt), generator=generator)
            for start in range(0, len(order), 64):
                batch = order[start : start + 64]
                optimizer.zero_grad()
                loss_fn(model(self.xt[batch]), self.yt[batch]).backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            return float((model(self.xv).argmax(1) == self.yv).float().mean())


def run_pbt(task: Task, seed: int, population: int, generations: int, epochs: int) -> float:
    algo = Pbt(
        parse_settings(
            PbtSettings,
            {
                "suggestion_trial_dir": "/ckpt",
                "n_population": str(population),
                "truncation_threshold": "0.25",
                "random_state": str(seed),
            },
            "pbt",
        )
    )
    trials: list[TrialResult] = []
    states: dict[str, dict[str, Any]] = {}
    best = 0.0
    for _ in range(generations):
        request = SuggestRequest(SPACE, OBJECTIVE, list(trials), population, f"bench-{seed}")
        for s in algo.suggest_trials(request):
            parent = s.labels.get("pbt.suggestion.katib.kubeflow.org/parent")
            state = copy.deepcopy(states[parent]) if parent else task.new(seed + len(trials))
            accuracy = task.train(state, s.assignment["lr"], s.assignment["momentum"], epochs)
            states[s.name] = state
            trials.append(
                TrialResult(s.name, s.assignment, TrialCondition.SUCCEEDED, accuracy, s.labels)
            )
            best = max(best, accuracy)
    return best


def run_random(task: Task, seed: int, count: int, epochs: int) -> float:
    rng = np.random.default_rng(seed)
    best = 0.0
    for i in range(count):
        lr = float(np.exp(rng.uniform(np.log(0.0005), np.log(0.5))))
        momentum = float(rng.uniform(0.0, 0.95))
        best = max(best, task.train(task.new(seed + i), lr, momentum, epochs))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--epochs-per-trial", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = Task()
    full = args.generations * args.epochs_per_trial
    budget = args.population * full
    print(
        f"budget {budget} epochs each: pbt {args.population} x {args.generations} generations "
        f"x {args.epochs_per_trial} epochs; random {args.population} configs x {full} epochs"
    )
    print()
    print("| seed | pbt: best accuracy | random: best accuracy |")
    print("| ---: | ---: | ---: |")
    pbt, rnd = [], []
    started = time.perf_counter()
    for seed in range(args.seeds):
        pbt.append(run_pbt(task, seed, args.population, args.generations, args.epochs_per_trial))
        rnd.append(run_random(task, seed, args.population, full))
        print(f"| {seed} | {pbt[-1]:.4f} | {rnd[-1]:.4f} |")
    print(f"| median | {statistics.median(pbt):.4f} | {statistics.median(rnd):.4f} |")
    print()
    wins = sum(p > r for p, r in zip(pbt, rnd, strict=True))
    print(f"pbt better on {wins}/{args.seeds} seeds; {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
