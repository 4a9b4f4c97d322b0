"""Multi-fidelity (issue 19): hyperband and asha against full-budget random search, medianstop
and Optuna's SuccessiveHalvingPruner / HyperbandPruner, on the same seeds in the same run.

Called as ``python -m bench.multifidelity`` (prints a table; ``--markdown`` writes it too).

Tasks (validation accuracy per epoch, maximised; R = 27 epochs at most):

- ``digits-mlp``: scikit-learn's ``MLPClassifier`` (adam) on the bundled digits (80/20
  stratified split, fixed), trained epoch by epoch with ``partial_fit``. Space: learning rate
  log [1e-4, 0.3], L2 alpha log [1e-6, 1e-1], hidden units 8..128, batch size log 16..512.
- ``surrogate``: many synthetic learning curves over the same space in [0,1]^4: each
  configuration has an asymptote (best at a moderate learning rate and small alpha), a speed
  (grows with the learning rate, so fast starters are not always the best finishers: curves
  cross) and per-epoch noise; cheap, so it takes more seeds.

A configuration's learning curve is a pure function of the configuration (fixed model seed),
so each is computed once per run and replayed: a method that trains a configuration for k
epochs sees exactly the first k points and is charged k epochs. (Hyperband's promotions
restart from scratch, as Katib's do, and are charged their whole resource.)

Methods, run one trial at a time (as a controller with parallelTrialCount 1), each to the
full budget B_full = TRIALS * R epochs (random search's):

- ``random-full``: random search, every trial trained R epochs.
- ``medianstop``/``asha``: the same configurations in the same order, judged after every epoch
  by tunery's stopper (``prepare``/``decide_curve``) against the finished trials
  (medianstop: Succeeded; asha: Succeeded and EarlyStopped). asha: min_resource 1,
  reduction_factor 3, grace_period 1, max_resource R; medianstop: Katib's defaults.
- ``optuna-sh``/``optuna-hb``: ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)``
  and ``HyperbandPruner(min_resource=1, max_resource=R, reduction_factor=3)`` on the same
  configurations in the same order (a pruner sees only the reported values), every epoch.
- ``asha-r3``/``optuna-sh-r3``: the same two with the first rung at 3 epochs (min_resource 3:
  rungs 3, 9, 27), for curves whose first epoch says little.
- ``hyperband``: tunery's hyperband (r_l = R, eta = 3, its own seeded random sampler), its
  schedule repeated (a new seed each pass) until the budget is spent.

Reported per task and method (median and IQR over seeds): the best accuracy found within
B_full / 3 epochs and within B_full, and the epochs spent until some trial first reaches the
target accuracy (``--target``; by default random-full's median best at B_full: its quality).
Goals: a method's best at B_full/3 at least random-full's best at B_full; asha at least
optuna-sh at equal budget.

Usage::

    python -m bench.multifidelity                       # both tasks
    python -m bench.multifidelity --task surrogate --seeds 20
    python -m bench.multifidelity --markdown out.md
"""

from __future__ import annotations

import os

if __name__ in ("__main__", "__mp_main__"):  # run as a benchmark: pin before numpy loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import concurrent.futures
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

R = 27
TRIALS = 50
Config = tuple[float, float, int, int]  # lr, alpha, hidden, batch


# -- tasks --------------------------------------------------------------------------------------


def config_from_unit(u: Sequence[float]) -> Config:
    lr = 10 ** (-4 + u[0] * math.log10(0.3 / 1e-4))
    alpha = 10 ** (-6 + u[1] * 5)
    hidden = round(8 + u[2] * 120)
    batch = round(2 ** (4 + u[3] * 5))
    return (lr, alpha, hidden, batch)


def unit_from_config(c: Config) -> tuple[float, float, float, float]:
    lr, alpha, hidden, batch = c
    return (
        math.log10(lr / 1e-4) / math.log10(0.3 / 1e-4),
        (math.log10(alpha) + 6) / 5,
        (hidden - 8) / 120,
        (math.log2(batch) - 4) / 5,
    )


class Task:
    """A learning-curve oracle: ``curve(config, k)`` is the first k validation accuracies."""

    name: str

    def __init__(self) -> None:
        self._curves: dict[Config, list[float]] = {}

    def curve(self, config: Config, epochs: int) -> list[float]:
        have = self._curves.setdefault(config, [])
        if len(have) < epochs:
            self._extend(config, have, epochs)
        return have[:epochs]

    def _extend(self, config: Config, have: list[float], epochs: int) -> None:
        raise NotImplementedError


class DigitsMlp(Task):
    name = "digits-mlp"

    def __init__(self) -> None:
        super().__init__()
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        self.x_train, self.x_val, self.y_train, self.y_val = train_test_split(
            x / 16.0, y, test_size=0.2, random_state=0, stratify=y
        )
        self._models: dict[Config, object] = {}

    def _extend(self, config: Config, have: list[float], epochs: int) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        model = self._models.get(config)
        if model is None:
            lr, alpha, hidden, batch = config
            model = MLPClassifier(
                hidden_layer_sizes=(hidden,),
                alpha=alpha,
                learning_rate_init=lr,
                batch_size=batch,
                random_state=0,
            )
            self._models[config] = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            while len(have) < epochs:
                model.partial_fit(self.x_train, self.y_train, classes=np.arange(10))  # type: ignore[attr-defined]
                have.append(float(model.score(self.x_val, self.y_val)))  # type: ignore[attr-defined]
        if len(have) >= R:
            self._models.pop(config, None)


class Surrogate(Task):
    name = "surrogate"

    def _extend(self, config: Config, have: list[float], epochs: int) -> None:
        u = unit_from_config(config)
        asymptote = 0.97 - 0.9 * (u[0] - 0.45) ** 2 - 0.25 * u[1] ** 2 - 0.04 * (1 - u[2]) ** 2
        speed = 0.03 + 0.6 * u[0] ** 1.5 + 0.1 * (1 - u[3])
        seed = int.from_bytes(np.asarray(config, dtype=float).tobytes()[:8], "little") % 2**32
        rng = np.random.default_rng(seed)
        noise = rng.normal(0, 0.004, R)
        for t in range(len(have), epochs):
            value = 0.1 + (asymptote - 0.1) * (1 - math.exp(-speed * (t + 1))) + noise[t]
            have.append(float(min(1.0, max(0.0, value))))


TASKS: dict[str, Callable[[], Task]] = {"digits-mlp": DigitsMlp, "surrogate": Surrogate}


# -- a run of one method ------------------------------------------------------------------------


@dataclass
class Trace:
    """(cumulative epochs, accuracy) per evaluated epoch, in the order the method ran them."""

    points: list[tuple[int, float]] = field(default_factory=list)
    spent: int = 0

    def add_curve(self, values: Sequence[float]) -> None:
        for v in values:
            self.spent += 1
            self.points.append((self.spent, v))

    def best_within(self, budget: int) -> float:
        return max((v for e, v in self.points if e <= budget), default=0.0)

    def epochs_to(self, target: float) -> int | None:
        return next((e for e, v in self.points if v >= target), None)


def pool(seed: int, n: int = 2000) -> list[Config]:
    rng = np.random.default_rng([19, seed])
    return [config_from_unit(u) for u in rng.random((n, 4))]


def run_random(task: Task, configs: list[Config], budget: int) -> Trace:
    trace = Trace()
    for c in configs:
        if trace.spent >= budget:
            break
        trace.add_curve(task.curve(c, R))
    return trace


def run_stopper(
    task: Task, configs: list[Config], budget: int, name: str, min_resource: int = 1
) -> Trace:
    from earlystop import get_early_stopper
    from earlystop.base import RunningCurve
    from tunery.trials import Objective, ObjectiveType, Observation, TrialCondition

    cls = get_early_stopper(name)
    settings = {"min_resource": str(min_resource), "reduction_factor": "3", "max_resource": str(R)}
    stopper = cls.from_settings(settings if name == "asha" else {})
    objective = Objective(ObjectiveType.MAXIMIZE, "accuracy")
    finished: list[list[Observation]] = []
    trace = Trace()
    for c in configs:
        if trace.spent >= budget:
            break
        policy = stopper.prepare(objective, finished)
        running = RunningCurve(objective)
        full = task.curve(c, R)
        observations: list[Observation] = []
        condition = TrialCondition.SUCCEEDED
        for step, value in enumerate(full):
            obs = Observation.of("accuracy", repr(value), step)
            observations.append(obs)
            running.add(obs)
            if step + 1 < R and policy.decide_curve(running).stop:
                condition = TrialCondition.EARLY_STOPPED
                break
        trace.add_curve(full[: len(observations)])
        if condition in cls.compared_conditions:
            finished.append(observations)
    return trace


def run_optuna(
    task: Task,
    configs: list[Config],
    budget: int,
    pruner_name: str,
    seed: int,
    min_resource: int = 1,
) -> Trace:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if pruner_name == "optuna-sh":
        pruner: optuna.pruners.BasePruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=3
        )
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=R, reduction_factor=3)
    study = optuna.create_study(  # the name seeds HyperbandPruner's bracket choice
        study_name=f"multifidelity-{seed}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner,
    )
    trace = Trace()
    for c in configs:
        if trace.spent >= budget:
            break
        trial = study.ask()  # the pruners judge reported values only: the configuration is c
        full = task.curve(c, R)
        ran = 0
        state = optuna.trial.TrialState.COMPLETE
        for step, value in enumerate(full, start=1):
            ran = step
            trial.report(value, step)
            if step < R and trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        trace.add_curve(full[:ran])
        if state is optuna.trial.TrialState.PRUNED:
            study.tell(trial, state=state)
        else:
            study.tell(trial, full[-1])
    return trace


def run_hyperband(task: Task, budget: int, seed: int) -> Trace:
    from suggestion.algorithms.base import SpaceExhaustedError, SuggestRequest, parse_settings
    from suggestion.algorithms.hyperband import Hyperband, HyperbandSettings
    from tunery.space import Parameter, SearchSpace
    from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

    space = SearchSpace(
        (
            Parameter.double("u0", 0.0, 1.0),
            Parameter.double("u1", 0.0, 1.0),
            Parameter.double("u2", 0.0, 1.0),
            Parameter.double("u3", 0.0, 1.0),
            Parameter.integer("epochs", 1, R),
        )
    )
    objective = Objective(ObjectiveType.MAXIMIZE, "accuracy")
    trace = Trace()
    iteration = 0
    while trace.spent < budget:
        raw = {"resource_name": "epochs", "r_l": str(R), "eta": "3"}
        raw["random_state"] = str(seed * 1000 + iteration)
        algo = Hyperband(parse_settings(HyperbandSettings, raw, "hyperband"))
        trials: list[TrialResult] = []
        while trace.spent < budget:
            request = SuggestRequest(space, objective, trials, 1, experiment_name="bench")
            try:
                [a] = algo.suggest(request)
            except SpaceExhaustedError:
                break
            c = config_from_unit([a["u0"], a["u1"], a["u2"], a["u3"]])  # type: ignore[list-item]
            values = task.curve(c, int(a["epochs"]))
            trace.add_curve(values)
            trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.SUCCEEDED, values[-1]))
        iteration += 1
    return trace


METHODS = (
    "random-full",
    "medianstop",
    "asha",
    "optuna-sh",
    "asha-r3",
    "optuna-sh-r3",
    "optuna-hb",
    "hyperband",
)


def run_seed(task_name: str, seed: int) -> dict[str, Trace]:
    task = TASKS[task_name]()
    configs = pool(seed)
    budget = TRIALS * R
    out: dict[str, Trace] = {}
    for method in METHODS:
        started = time.perf_counter()
        if method == "random-full":
            out[method] = run_random(task, configs, budget)
        elif method in ("medianstop", "asha", "asha-r3"):
            first = 3 if method.endswith("-r3") else 1
            out[method] = run_stopper(task, configs, budget, method.removesuffix("-r3"), first)
        elif method.startswith("optuna"):
            first = 3 if method.endswith("-r3") else 1
            name = method.removesuffix("-r3")
            out[method] = run_optuna(task, configs, budget, name, seed, first)
        else:
            out[method] = run_hyperband(task, budget, seed)
        print(
            f"  {task_name} seed {seed} {method}: {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return out


# -- report -------------------------------------------------------------------------------------


def _q(values: Sequence[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(np.quantile(a, 0.25)), float(np.quantile(a, 0.75))


def table(task_name: str, runs: list[dict[str, Trace]], target: float | None) -> str:
    budget = TRIALS * R
    third = budget // 3
    reference = statistics.median(r["random-full"].best_within(budget) for r in runs)
    goal = target if target is not None else reference
    lines = [
        f"### {task_name}: {len(runs)} seeds, {TRIALS} x {R} = {budget} epochs full budget, "
        f"target accuracy {goal:.4f}",
        "",
        f"| method | best @ {third} epochs (median [IQR]) | best @ {budget} epochs | "
        f"epochs to target (median) | seeds reaching target | ≥ random-full @ {budget} "
        f"with {third} epochs (seeds) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method in METHODS:
        thirds = [r[method].best_within(third) for r in runs]
        fulls = [r[method].best_within(budget) for r in runs]
        reach = [r[method].epochs_to(goal) for r in runs]
        reached = [e for e in reach if e is not None]
        wins = sum(
            r[method].best_within(third) >= r["random-full"].best_within(budget) for r in runs
        )
        m3, l3, h3 = _q(thirds)
        mf, lf, hf = _q(fulls)
        to = f"{statistics.median(e if e is not None else math.inf for e in reach):.0f}"
        lines.append(
            f"| {method} | {m3:.4f} [{l3:.4f}, {h3:.4f}] | {mf:.4f} [{lf:.4f}, {hf:.4f}] | "
            f"{to} | {len(reached)}/{len(runs)} | {wins}/{len(runs)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--seeds", type=int, default=None, help="default: mlp 5, surrogate 20")
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    tasks = list(TASKS) if args.task == "all" else [args.task]
    out = []
    for task_name in tasks:
        seeds = args.seeds or (5 if task_name == "digits-mlp" else 20)
        started = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(args.workers) as pool_:
            runs = list(pool_.map(run_seed, [task_name] * seeds, range(seeds)))
        text = table(task_name, runs, args.target)
        out.append(f"{text}\n\n({time.perf_counter() - started:.0f} s)")
        print(out[-1], flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
