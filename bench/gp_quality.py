"""Quality and latency of tunery's GP Bayesian optimiser beside optuna's GPSampler and random.

Not a test: a script that prints tables. Each (method, problem, seed) run is a separate
process (math libraries pinned to one thread, runs spread over ``--jobs`` processes), so the
peak RSS reported is that run's own. tunery's algorithm is called in-process exactly as the
suggestion service calls it: one instance per experiment, the whole history each time.

    python -m bench.gp_quality                      # 5 seeds, 50 trials, Branin + Hartmann6
    python -m bench.gp_quality --seeds 10 --latency-trials 200

Regret is best-found minus the known optimum, median [IQR] over seeds, at 10/25/50 trials.
Latency is the time of one ``suggest`` (one ``ask`` for optuna) per history window, p50/p95
over every call of every seed in that window.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from bench import problems  # noqa: E402

Objective = Callable[[Sequence[float]], float]


@dataclass(frozen=True)
class Problem:
    name: str
    bounds: tuple[tuple[float, float], ...]
    optimum: float
    f: Objective


def branin(x: Sequence[float]) -> float:
    return problems.branin({"x0": x[0], "x1": x[1]})


def hartmann6(x: Sequence[float]) -> float:
    return problems.hartmann6({f"x{i}": v for i, v in enumerate(x)})


_H3_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)


def hartmann3(x: Sequence[float]) -> float:
    xx = np.asarray(x, dtype=float)
    return float(-np.sum(_H3_ALPHA * np.exp(-np.sum(_H3_A * (xx - _H3_P) ** 2, axis=1))))


def levy(x: Sequence[float]) -> float:
    w = 1 + (np.asarray(x, dtype=float) - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def rosenbrock(x: Sequence[float]) -> float:
    xx = np.asarray(x, dtype=float)
    return float(np.sum(100 * (xx[1:] - xx[:-1] ** 2) ** 2 + (1 - xx[:-1]) ** 2))


def styblinski_tang(x: Sequence[float]) -> float:
    xx = np.asarray(x, dtype=float)
    return float(0.5 * np.sum(xx**4 - 16 * xx**2 + 5 * xx))


def ackley(x: Sequence[float]) -> float:
    xx = np.asarray(x, dtype=float)
    d = len(xx)
    a = -20 * math.exp(-0.2 * math.sqrt(float(np.sum(xx**2)) / d))
    return float(a - math.exp(float(np.sum(np.cos(2 * math.pi * xx))) / d) + 20 + math.e)


PROBLEMS = {
    "branin": Problem("branin", ((-5.0, 10.0), (0.0, 15.0)), 0.397887, branin),
    "hartmann6": Problem("hartmann6", ((0.0, 1.0),) * 6, -3.322368, hartmann6),
    # Extra problems (not in the default set) to check the GP is not tuned to two functions.
    "hartmann3": Problem("hartmann3", ((0.0, 1.0),) * 3, -3.86278, hartmann3),
    "levy4": Problem("levy4", ((-10.0, 10.0),) * 4, 0.0, levy),
    "rosenbrock4": Problem("rosenbrock4", ((-5.0, 10.0),) * 4, 0.0, rosenbrock),
    "styblinski4": Problem("styblinski4", ((-5.0, 5.0),) * 4, -39.16599 * 4, styblinski_tang),
    "ackley4": Problem("ackley4", ((-5.0, 10.0),) * 4, 0.0, ackley),
}


@dataclass(frozen=True)
class RunResult:
    method: str
    problem: str
    seed: int
    values: list[float]
    latencies: list[float]  # seconds per suggestion, index = history size
    peak_rss_mb: float


def _run_tunery(
    problem: Problem, seed: int, trials: int, batch: int = 1, estimator: str = "GP"
) -> tuple[list[float], list[float]]:
    from suggestion.algorithms.base import SuggestRequest
    from suggestion.algorithms.bayesian import BayesianOptimization, BayesianOptimizationSettings
    from tunery.space import Parameter, SearchSpace
    from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

    space = SearchSpace(
        tuple(Parameter.double(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(problem.bounds))
    )
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    settings = BayesianOptimizationSettings(random_state=seed, base_estimator=estimator)
    algo = BayesianOptimization(settings)
    history: list[TrialResult] = []
    values, latencies = [], []
    while len(history) < trials:
        count = min(batch, trials - len(history))
        request = SuggestRequest(space, objective, tuple(history), count, experiment_name="bench")
        t0 = time.perf_counter()
        assignments = algo.suggest(request)
        latencies.extend([(time.perf_counter() - t0) / count] * count)
        for assignment in assignments:
            value = problem.f([assignment[f"x{j}"] for j in range(len(problem.bounds))])
            values.append(value)
            name = f"t{len(history)}"
            history.append(TrialResult(name, assignment, TrialCondition.SUCCEEDED, value))
    return values, latencies


def _run_optuna(
    problem: Problem, seed: int, trials: int, sampler_name: str, batch: int = 1
) -> tuple[list[float], list[float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if sampler_name == "optuna-gp":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GPSampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    dists = {
        f"x{i}": optuna.distributions.FloatDistribution(lo, hi)
        for i, (lo, hi) in enumerate(problem.bounds)
    }
    values, latencies = [], []
    while len(values) < trials:
        asked = []
        for _ in range(min(batch, trials - len(values))):
            t0 = time.perf_counter()
            asked.append(study.ask(dists))
            latencies.append(time.perf_counter() - t0)
        for trial in asked:
            value = problem.f([trial.params[f"x{j}"] for j in range(len(problem.bounds))])
            study.tell(trial, value)
            values.append(value)
    return values, latencies


def run_one(args: tuple[str, str, int, int, int]) -> RunResult:
    method, problem_name, seed, trials, batch = args
    problem = PROBLEMS[problem_name]
    if method.startswith("tunery-"):
        estimator = method.removeprefix("tunery-").upper()
        values, latencies = _run_tunery(problem, seed, trials, batch, estimator)
    else:
        values, latencies = _run_optuna(problem, seed, trials, method, batch)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return RunResult(method, problem_name, seed, values, latencies, rss_kb / 1024)


def _fmt(x: float) -> str:
    return f"{x:.2e}" if abs(x) < 0.01 else f"{x:.3f}"


def _regret_table(results: list[RunResult], checkpoints: Sequence[int]) -> str:
    lines = [
        "| problem | method | "
        + " | ".join(f"regret@{c} median [IQR]" for c in checkpoints)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in checkpoints) + " |",
    ]
    keys = sorted({(r.problem, r.method) for r in results})
    for problem, method in keys:
        runs = [r for r in results if r.problem == problem and r.method == method]
        optimum = PROBLEMS[problem].optimum
        cells = []
        for c in checkpoints:
            regrets = [min(r.values[:c]) - optimum for r in runs if len(r.values) >= c]
            if not regrets:
                cells.append("—")
                continue
            q1, med, q3 = np.percentile(regrets, [25, 50, 75])
            cells.append(f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]")
        lines.append(f"| {problem} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latency_table(results: list[RunResult], windows: Sequence[tuple[int, int]]) -> str:
    lines = [
        "| problem | method | "
        + " | ".join(f"history {a}-{b} p50 / p95 ms" for a, b in windows)
        + " | peak RSS MB |",
        "| --- | --- | " + " | ".join("---" for _ in windows) + " | --- |",
    ]
    keys = sorted({(r.problem, r.method) for r in results})
    for problem, method in keys:
        runs = [r for r in results if r.problem == problem and r.method == method]
        cells = []
        for a, b in windows:
            lat = [x for r in runs for x in r.latencies[a:b]]
            if not lat:
                cells.append("—")
                continue
            p50, p95 = np.percentile(lat, [50, 95]) * 1000
            cells.append(f"{p50:.1f} / {p95:.1f}")
        rss = max(r.peak_rss_mb for r in runs)
        lines.append(f"| {problem} | {method} | " + " | ".join(cells) + f" | {rss:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--problems", default="branin,hartmann6")
    parser.add_argument(
        "--methods",
        default="tunery-gp,optuna-gp,random",
        help="comma-separated: tunery-gp, tunery-rf, tunery-et, tunery-gbrt, optuna-gp, random",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="trials asked at once and evaluated together (tunery: one request; optuna: "
        "that many ask() before the tells); latency is then per assignment",
    )
    parser.add_argument(
        "--latency-trials",
        type=int,
        default=0,
        help="also run tunery-gp alone on hartmann6 for this many trials (latency at depth)",
    )
    args = parser.parse_args(argv)
    jobs = [
        (method, problem, seed, args.trials, args.batch)
        for problem in args.problems.split(",")
        for method in args.methods.split(",")
        for seed in range(args.seeds)
    ]
    deep = [("tunery-gp", "hartmann6", seed, args.latency_trials, 1) for seed in range(args.seeds)]
    if args.latency_trials <= 0:
        deep = []
    started = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run_one, jobs, chunksize=1)
        deep_results = pool.map(run_one, deep, chunksize=1) if deep else []
    print(
        f"# tunery GP vs optuna GPSampler vs random — {args.seeds} seeds, {args.trials} trials"
        f", batch {args.batch}"
    )
    print(f"# python {sys.version.split()[0]}, threads pinned to 1, {args.jobs} processes\n")
    checkpoints = [c for c in (10, 25, 50, 100, 200) if c <= args.trials]
    print(_regret_table(results, checkpoints))
    print()
    windows = [(0, 10), (10, 25), (25, 50), (50, 100), (100, 200)]
    windows = [(a, min(b, args.trials)) for a, b in windows if a < args.trials]
    print(_latency_table([r for r in results if r.method != "random"], windows))
    if deep_results:
        print()
        print(f"# tunery GP alone on hartmann6, {args.latency_trials} trials")
        deep_windows = [(0, 10), (10, 100), (100, 200), (200, 500)]
        deep_windows = [(a, min(b, args.latency_trials)) for a, b in deep_windows]
        deep_windows = [(a, b) for a, b in deep_windows if a < b]
        print(_latency_table(deep_results, deep_windows))
    print(f"\n# wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
