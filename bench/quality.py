"""Optimisation quality (shared/benchmarks.md §2): simple regret of every tunery algorithm,
driven through the gRPC Suggestion service as the controller drives it, beside the libraries
users would otherwise call directly, with the same seeds.

Called as ``python -m bench.quality`` (alone or from ``bench.run_all``); ``tests/test_quality.py``
uses :func:`run_tunery_inprocess`.

tunery's algorithms: one gRPC server per worker process (``create_suggestion_server`` on
127.0.0.1); each trial is one ``GetSuggestions`` call asking for 1 assignment, built by the
controller's own ``controller.protos.suggestions_request`` from the normalised Experiment spec
and every trial so far (Succeeded, with its objective as the collector summarises it), so the
service sees exactly what tunery's controller sends. ``random_state`` is the seed.

Baselines, called in-process with the same seed: random search (numpy, uniform or log-uniform
per dimension); optuna ``TPESampler(multivariate=False)`` and the default ``TPESampler()``
(multivariate in optuna >= 5 for one objective); optuna ``CmaEsSampler``; hyperopt
``tpe.suggest``; scikit-optimize ``gp_minimize`` (default ``gp_hedge``) when installed; optuna
``GPSampler``. Startup (random) trials are read from each library's defaults and shown.

Each run records the whole trace of objective values; the regret at 10/25/50 trials is read
from the same run as at 200 (no algorithm here uses the budget other than to validate it), so
"budget 50" is the first 50 trials. GP methods run to 100 trials. Math libraries are pinned to
one thread and runs are spread over ``--workers`` processes. ``--quick``: 5 seeds, 50 trials
on Branin and Hartmann6, and 25 trials on the SVC task for the methods the bars compare only
(:data:`QUICK_SVC_METHODS`).

Usage::

    python -m bench.quality --quick              # < 10 minutes on 2 idle cores
    python -m bench.quality                      # 10 seeds, 200 trials (GP 100): hours
    python -m bench.quality --problems branin --methods "tunery tpe,random (numpy)" --seeds 3
    python -m bench.quality --quick --markdown out.md --json out.json
    python -m bench.quality --json out.json --resume   # after an interruption: the rest only

With ``--json`` the file is rewritten after every finished run, so a run of hours that is
interrupted loses at most the runs in flight; ``--resume`` keeps the finished ones.
"""

from __future__ import annotations

import os

if __name__ in ("__main__", "__mp_main__"):  # run as a benchmark: pin before numpy loads
    for _var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        os.environ[_var] = "1"

import argparse
import concurrent.futures
import datetime as dt
import inspect
import json
import math
import multiprocessing
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.problems import PROBLEMS, Problem

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = (10, 25, 50, 100, 200)
GP_BUDGET = 100
GRID_STEPS = {"branin": 0.25, "hartmann6": 0.05}
"""Katib's grid needs a step for doubles and steps linearly, so it runs where a linear lattice
makes sense: Branin 61 x 61 points, Hartmann6 21^6, both visited in seeded shuffled order."""

TUNERY_PREFIX = "tunery "
RANDOM = "random (numpy)"
OPTUNA_TPE_UNI = "optuna TPE univariate"
OPTUNA_TPE = "optuna TPE default (multivariate)"
OPTUNA_CMA = "optuna CMA-ES"
HYPEROPT = "hyperopt TPE"
SKOPT = "skopt gp_minimize"
OPTUNA_GP = "optuna GPSampler"
BASELINES = (RANDOM, OPTUNA_TPE_UNI, OPTUNA_TPE, OPTUNA_CMA, HYPEROPT, SKOPT, OPTUNA_GP)
GP_METHODS = {SKOPT, OPTUNA_GP, "tunery bayesianoptimization"}

QUICK_BUDGETS = {"branin": 50, "hartmann6": 50, "svc-digits": 25}
QUICK_SVC_METHODS = (
    "tunery random",
    "tunery tpe",
    "tunery bayesianoptimization",
    RANDOM,
    OPTUNA_TPE_UNI,
    HYPEROPT,
    OPTUNA_GP,
)
"""--quick runs the SVC task (0.2-0.8 s per evaluation) only for the methods the bars compare."""
FULL_BUDGETS = {"branin": 200, "hartmann6": 200, "svc-digits": 200}


class QualityBenchError(RuntimeError):
    """A benchmark run could not be carried out (a library or the service failed)."""


# -- methods -------------------------------------------------------------------------------------


def tunery_algorithms() -> list[str]:
    """The registered black-box algorithms (pbt hands checkpoints on: bench/pbt_digits.py)."""
    from suggestion.algorithms import REGISTRY, get_algorithm

    return [a for a in REGISTRY if "checkpoints" not in get_algorithm(a).capabilities]


def skopt_available() -> str | None:
    """None when scikit-optimize imports and runs here, else why not."""
    try:
        import skopt  # noqa: F401
    except Exception as exc:  # ImportError, or numpy 2 incompatibilities at import
        return f"{type(exc).__name__}: {exc}"
    return None


def all_methods() -> list[str]:
    return [TUNERY_PREFIX + a for a in tunery_algorithms()] + list(BASELINES)


def method_budget(method: str, budget: int) -> int:
    return min(budget, GP_BUDGET) if method in GP_METHODS else budget


def applicable(method: str, problem: str) -> bool:
    return not (method == "tunery grid" and problem not in GRID_STEPS)


def describe(method: str) -> tuple[str, str]:
    """(variant, startup trials) for the methods table, read from the libraries' defaults."""
    if method.startswith(TUNERY_PREFIX):
        from suggestion.algorithms import get_algorithm

        name = method.removeprefix(TUNERY_PREFIX)
        cls = get_algorithm(name)
        settings = cls.settings_type()
        startup = getattr(
            settings, "n_startup_trials", getattr(settings, "n_initial_points", None)
        )
        doc = (cls.__doc__ or name).strip().splitlines()[0].split("; see ")[0].rstrip(".")
        if hasattr(settings, "acq_func"):
            doc += f", acq_func {settings.acq_func}"
        if name == "grid":
            doc += "; steps " + ", ".join(f"{p} {s}" for p, s in GRID_STEPS.items())
        return doc, "-" if startup is None else str(startup)
    if method == RANDOM:
        return "numpy default_rng(seed), uniform / log-uniform", "-"
    if method in (OPTUNA_TPE_UNI, OPTUNA_TPE, OPTUNA_CMA, OPTUNA_GP):
        import optuna

        cls = {
            OPTUNA_TPE_UNI: optuna.samplers.TPESampler,
            OPTUNA_TPE: optuna.samplers.TPESampler,
            OPTUNA_CMA: optuna.samplers.CmaEsSampler,
            OPTUNA_GP: optuna.samplers.GPSampler,
        }[method]
        startup = inspect.signature(cls).parameters["n_startup_trials"].default
        variant = {
            OPTUNA_TPE_UNI: "TPESampler(multivariate=False)",
            OPTUNA_TPE: "TPESampler() (multivariate=None: multivariate for one objective)",
            OPTUNA_CMA: "CmaEsSampler()",
            OPTUNA_GP: "GPSampler() (logEI, optuna's own GP on torch)",
        }[method]
        return f"optuna {optuna.__version__} {variant}", str(startup)
    if method == HYPEROPT:
        import hyperopt
        from hyperopt import tpe

        return (
            f"hyperopt {hyperopt.__version__} tpe.suggest (univariate, gamma "
            f"{tpe._default_gamma}, {tpe._default_n_EI_candidates} EI candidates)",
            str(tpe._default_n_startup_jobs),
        )
    if method == SKOPT:
        if skopt_available() is not None:
            return "scikit-optimize gp_minimize: not installed here", "-"
        import skopt

        params = inspect.signature(skopt.gp_minimize).parameters
        return (
            f"scikit-optimize {skopt.__version__} gp_minimize(acq_func="
            f"{params['acq_func'].default!r})",
            str(params["n_initial_points"].default),
        )
    raise ValueError(f"unknown method {method!r}")


# -- tunery through gRPC -------------------------------------------------------------------------


def experiment_name(problem: Problem, algorithm: str, seed: int) -> str:
    """A valid experiment name (at most 40 characters), distinct per run."""
    return f"q-{algorithm[:14]}-{problem.name[:10]}-{seed}"


def experiment_spec(problem: Problem, algorithm: str, seed: int, budget: int) -> dict[str, Any]:
    """The normalised Experiment ``spec`` a user would submit for this run."""
    from tunery.experiment import load_experiment

    parameters = problem.katib_parameters()
    if algorithm == "grid":
        for p in parameters:
            p["feasibleSpace"]["step"] = repr(GRID_STEPS[problem.name])
    doc = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": experiment_name(problem, algorithm, seed)},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {
                "algorithmName": algorithm,
                "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
            },
            "parallelTrialCount": 1,
            "maxTrialCount": budget,
            "parameters": parameters,
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": n, "reference": n} for n in problem.names],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "command": ["echo"]
                                        + [f"${{trialParameters.{n}}}" for n in problem.names],
                                    }
                                ]
                            }
                        }
                    },
                },
            },
        },
    }
    return dict(load_experiment(doc).to_document()["spec"])


SuggestFn = Callable[[Any], Any]
"""GetSuggestionsRequest -> GetSuggestionsReply (a gRPC stub method or the service in-process)."""


def drive(
    suggest: SuggestFn, problem: Problem, algorithm: str, seed: int, budget: int
) -> list[float]:
    """Run one experiment sequentially (batch 1) the way the controller does; the values."""
    from controller.protos import suggestions_request
    from tunery.store.base import TrialRecord
    from tunery.trials import TrialCondition

    spec = experiment_spec(problem, algorithm, seed, budget)
    name = experiment_name(problem, algorithm, seed)
    records: list[TrialRecord] = []
    values: list[float] = []
    for i in range(budget):
        reply = suggest(suggestions_request(name, spec, records, 1))
        if len(reply.parameter_assignments) != 1:
            raise QualityBenchError(
                f"{algorithm} returned {len(reply.parameter_assignments)} assignments, not 1"
            )
        assignment = {a.name: a.value for a in reply.parameter_assignments[0].assignments}
        value = problem.evaluate({k: float(v) for k, v in assignment.items()})
        text = repr(value)
        records.append(
            TrialRecord(
                name=f"{name}-{i:04d}",
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


_CHANNEL: dict[str, Any] = {}


def _grpc_suggest() -> SuggestFn:
    """This process's gRPC stub method, starting the in-process server the first time."""
    if "stub" not in _CHANNEL:
        import atexit

        import grpc

        from suggestion.server import create_suggestion_server
        from tunery.api import api_pb2_grpc

        server, port = create_suggestion_server("127.0.0.1:0", max_workers=4)
        server.start()
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
            ],
        )
        grpc.channel_ready_future(channel).result(timeout=30)
        _CHANNEL.update(server=server, channel=channel)
        _CHANNEL["stub"] = api_pb2_grpc.SuggestionStub(channel)
        atexit.register(lambda: (channel.close(), server.stop(None)))
    stub = _CHANNEL["stub"]
    return lambda request: stub.GetSuggestions(request, timeout=600)


def run_tunery_grpc(problem: Problem, algorithm: str, seed: int, budget: int) -> list[float]:
    return drive(_grpc_suggest(), problem, algorithm, seed, budget)


def run_tunery_inprocess(problem: Problem, algorithm: str, seed: int, budget: int) -> list[float]:
    """The same requests to a ``SuggestionService`` in this process (no transport)."""
    from suggestion.service import SuggestionService

    return drive(SuggestionService().suggest, problem, algorithm, seed, budget)


# -- baselines -----------------------------------------------------------------------------------


def run_random(problem: Problem, seed: int, budget: int) -> list[float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(budget):
        u = rng.random(len(problem.dimensions))
        point = {d.name: d.from_unit(float(x)) for d, x in zip(problem.dimensions, u, strict=True)}
        values.append(problem.evaluate(point))
    return values


def run_optuna(problem: Problem, method: str, seed: int, budget: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        OPTUNA_TPE_UNI: lambda: optuna.samplers.TPESampler(seed=seed, multivariate=False),
        OPTUNA_TPE: lambda: optuna.samplers.TPESampler(seed=seed),
        OPTUNA_CMA: lambda: optuna.samplers.CmaEsSampler(seed=seed),
        OPTUNA_GP: lambda: optuna.samplers.GPSampler(seed=seed),
    }
    study = optuna.create_study(sampler=samplers[method]())
    study.optimize(
        lambda t: problem.evaluate(
            {d.name: t.suggest_float(d.name, d.low, d.high, log=d.log) for d in problem.dimensions}
        ),
        n_trials=budget,
    )
    return [float(t.value) for t in study.trials]


def run_hyperopt(problem: Problem, seed: int, budget: int) -> list[float]:
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

    space = {
        d.name: hp.loguniform(d.name, math.log(d.low), math.log(d.high))
        if d.log
        else hp.uniform(d.name, d.low, d.high)
        for d in problem.dimensions
    }
    trials = Trials()
    fmin(
        lambda p: {"loss": problem.evaluate(p), "status": STATUS_OK},
        space,
        algo=tpe.suggest,
        max_evals=budget,
        trials=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return [float(x) for x in trials.losses()]


def run_skopt(problem: Problem, seed: int, budget: int) -> list[float]:
    from skopt import gp_minimize
    from skopt.space import Real

    dims = [
        Real(d.low, d.high, prior="log-uniform" if d.log else "uniform", name=d.name)
        for d in problem.dimensions
    ]
    result = gp_minimize(
        lambda x: problem.evaluate({d.name: float(v) for d, v in zip(dims, x, strict=True)}),
        dims,
        n_calls=budget,
        random_state=seed,
    )
    return [float(v) for v in result.func_vals]


# -- one run, in a worker process ----------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    method: str
    problem: str
    seed: int
    budget: int


@dataclass(frozen=True)
class RunResult:
    method: str
    problem: str
    seed: int
    budget: int
    values: tuple[float, ...]
    seconds: float
    error: str = ""


def _init_worker() -> None:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def run_task(task: Task) -> RunResult:
    problem = PROBLEMS[task.problem]
    started = time.process_time()
    try:
        if task.method.startswith(TUNERY_PREFIX):
            algorithm = task.method.removeprefix(TUNERY_PREFIX)
            values = run_tunery_grpc(problem, algorithm, task.seed, task.budget)
        elif task.method == RANDOM:
            values = run_random(problem, task.seed, task.budget)
        elif task.method.startswith("optuna"):
            values = run_optuna(problem, task.method, task.seed, task.budget)
        elif task.method == HYPEROPT:
            values = run_hyperopt(problem, task.seed, task.budget)
        elif task.method == SKOPT:
            values = run_skopt(problem, task.seed, task.budget)
        else:
            raise ValueError(f"unknown method {task.method!r}")
    except Exception as exc:  # recorded and reported; the other runs go on
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        return RunResult(
            task.method,
            task.problem,
            task.seed,
            task.budget,
            (),
            time.process_time() - started,
            f"{type(exc).__name__}: {detail}".splitlines()[0][:200],
        )
    if len(values) != task.budget:
        raise QualityBenchError(f"{task}: {len(values)} values, expected {task.budget}")
    return RunResult(
        task.method,
        task.problem,
        task.seed,
        task.budget,
        tuple(values),
        time.process_time() - started,
    )


_COST = {"svc-digits": 40.0, "hartmann6": 1.0, "branin": 1.0}


def _estimated_cost(task: Task) -> float:
    model = 8.0 if task.method in GP_METHODS else 1.0
    return task.budget * (_COST[task.problem] + model)


def run_tasks(
    tasks: Sequence[Task],
    workers: int,
    on_result: Callable[[RunResult], None] = lambda result: None,
) -> list[RunResult]:
    """All tasks over ``workers`` spawned processes, seed by seed (so an interrupted run holds
    whole seeds) and the longest first within a seed; progress on stderr and ``on_result``
    called with each result as it arrives."""
    ordered = sorted(tasks, key=lambda t: (t.seed, -_estimated_cost(t)))
    results: list[RunResult] = []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = {pool.submit(run_task, t): t for t in ordered}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            results.append(result)
            on_result(result)
            status = f"error {result.error}" if result.error else f"{result.seconds:.1f}s CPU"
            print(
                f"[{i}/{len(ordered)}] {result.problem} {result.method} seed {result.seed}: "
                f"{status}",
                file=sys.stderr,
                flush=True,
            )
    return results


# -- statistics and tables -----------------------------------------------------------------------


@dataclass(frozen=True)
class Quartiles:
    q25: float
    median: float
    q75: float
    n: int

    def cell(self) -> str:
        return f"{_num(self.median)} [{_num(self.q25)}, {_num(self.q75)}]"


def _num(x: float) -> str:
    if math.isnan(x):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 100 or abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.3g}"


def regret_at(values: Sequence[float], f_star: float, n: int) -> float:
    return float(min(values[:n])) - f_star


def regrets(results: Sequence[RunResult], method: str, problem: str, n: int) -> np.ndarray | None:
    """The simple regret after ``n`` trials, one per seed (None if no run reached ``n`` trials
    or any run of this method failed)."""
    runs = [r for r in results if r.method == method and r.problem == problem]
    if not runs or any(r.error for r in runs) or any(len(r.values) < n for r in runs):
        return None
    f_star = PROBLEMS[problem].f_star
    return np.array([regret_at(r.values, f_star, n) for r in runs])


def quartiles(results: Sequence[RunResult], method: str, problem: str, n: int) -> Quartiles | None:
    """Median and IQR over seeds of the simple regret after ``n`` trials."""
    values = regrets(results, method, problem, n)
    if values is None:
        return None
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return Quartiles(float(q25), float(q50), float(q75), len(values))


def worse_p_value(ours: np.ndarray, theirs: np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value of "ours is worse (higher regret) than theirs": a small
    value says a gap is real, a large one that the seeds cannot tell the two apart."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(ours, theirs, alternative="greater").pvalue)


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(" --- " for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def regret_tables(results: Sequence[RunResult], methods: Sequence[str]) -> str:
    out = []
    problems = [p for p in PROBLEMS if any(r.problem == p for r in results)]
    for problem in problems:
        top = max(len(r.values) for r in results if r.problem == problem)
        checkpoints = [c for c in CHECKPOINTS if c <= top]
        seeds = len({r.seed for r in results if r.problem == problem})
        rows = [["method"] + [f"@{c}" for c in checkpoints] + ["CPU s / run"]]
        for method in methods:
            runs = [r for r in results if r.method == method and r.problem == problem]
            if not runs:
                continue
            errors = [r.error for r in runs if r.error]
            if errors:
                rows.append([method, f"error: {errors[0]}"] + [""] * len(checkpoints))
                continue
            cells = []
            for c in checkpoints:
                q = quartiles(results, method, problem, c)
                cells.append(q.cell() if q else "")
            cpu = float(np.median([r.seconds for r in runs]))
            rows.append([method, *cells, f"{cpu:.1f}"])
        out.append(
            f"**{PROBLEMS[problem].description}** — simple regret, median [IQR] over {seeds} "
            f"seeds\n\n{_table(rows)}"
        )
    return "\n\n".join(out)


def methods_table(methods: Sequence[str]) -> str:
    rows = [["method", "variant", "startup trials"]]
    for method in methods:
        variant, startup = describe(method)
        rows.append([method, variant, startup])
    return _table(rows)


@dataclass(frozen=True)
class BarCheck:
    bar: str
    problem: str
    trials: int
    ours: str
    theirs: str
    p_worse: float  # one-sided Mann-Whitney p-value that ours is worse (see worse_p_value)
    verdict: str  # "pass" or "FAIL"


def _within_iqr_or_better(ours: Quartiles, theirs: Quartiles) -> bool:
    return ours.median <= theirs.q75


def _clearly_better(ours: Quartiles, random: Quartiles) -> bool:
    return ours.median < random.q25


def check_bars(results: Sequence[RunResult]) -> list[BarCheck]:
    """The bars of issue 9 / benchmarks.md §2, evaluated on these results.

    - ``tpe ≈ optuna TPE univariate / hyperopt``: tunery tpe's median regret is at most the
      baseline's upper quartile ("within the IQR of, or better than"), at 50 and 200 trials.
    - ``GP ≥ optuna GPSampler``: same rule at 50 trials (tunery bayesianoptimization).
    - ``clearly better than random``: the median regret is below random search's lower
      quartile, at 50 trials, for tpe and the GP.
    - like-for-like: multivariate-tpe vs optuna's default TPE, cmaes vs optuna CMA-ES (same
      rule as the first bar), at 50 and 200 trials.
    """
    checks: list[BarCheck] = []
    problems = [p for p in PROBLEMS if any(r.problem == p for r in results)]
    pairs = [
        ("tunery tpe", OPTUNA_TPE_UNI, (50, 200)),
        ("tunery tpe", HYPEROPT, (50, 200)),
        ("tunery bayesianoptimization", OPTUNA_GP, (50,)),
        ("tunery multivariate-tpe", OPTUNA_TPE, (50, 200)),
        ("tunery cmaes", OPTUNA_CMA, (50, 200)),
    ]
    present = {r.method for r in results}
    for problem in problems:
        top = max(len(r.values) for r in results if r.problem == problem)
        for ours, theirs, wanted in pairs:
            if ours not in present or theirs not in present:
                continue
            # a shorter run (--quick on the SVC task) is judged at its last checkpoint
            ns = [n for n in wanted if n <= top] or [max(c for c in CHECKPOINTS if c <= top)]
            for n in ns:
                a = quartiles(results, ours, problem, n)
                b = quartiles(results, theirs, problem, n)
                if a is None or b is None:
                    continue
                ok = _within_iqr_or_better(a, b)
                checks.append(
                    BarCheck(
                        f"{ours} within IQR of / better than {theirs}",
                        problem,
                        n,
                        a.cell(),
                        b.cell(),
                        _p_worse(results, ours, theirs, problem, n),
                        "pass" if ok else "FAIL",
                    )
                )
        for ours in ("tunery tpe", "tunery bayesianoptimization"):
            if ours not in present or RANDOM not in present:
                continue
            n = min(50, max(c for c in CHECKPOINTS if c <= top))
            a = quartiles(results, ours, problem, n)
            b = quartiles(results, RANDOM, problem, n)
            if a is None or b is None:
                continue
            checks.append(
                BarCheck(
                    f"{ours} clearly better than random (median < random's Q1)",
                    problem,
                    n,
                    a.cell(),
                    b.cell(),
                    _p_worse(results, ours, RANDOM, problem, n),
                    "pass" if _clearly_better(a, b) else "FAIL",
                )
            )
    return checks


def _p_worse(results: Sequence[RunResult], ours: str, theirs: str, problem: str, n: int) -> float:
    a, b = regrets(results, ours, problem, n), regrets(results, theirs, problem, n)
    assert a is not None and b is not None  # the callers checked the quartiles
    return worse_p_value(a, b)


def bars_table(checks: Sequence[BarCheck]) -> str:
    rows = [["bar", "problem", "trials", "ours", "baseline", "p(ours worse)", "verdict"]]
    rows += [
        [c.bar, c.problem, str(c.trials), c.ours, c.theirs, f"{c.p_worse:.2g}", c.verdict]
        for c in checks
    ]
    return _table(rows)


# -- environment and main ------------------------------------------------------------------------


def environment() -> str:
    import cmaes
    import grpc
    import optuna
    import scipy
    import sklearn

    versions = [
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"scipy {scipy.__version__}",
        f"scikit-learn {sklearn.__version__}",
        f"grpcio {grpc.__version__}",
        f"optuna {optuna.__version__}",
        f"cmaes {cmaes.__version__}",
    ]
    for module in ("hyperopt", "skopt", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:
            versions.append(f"{module} not installed")
    load = os.getloadavg()
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {cpu_model()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} at start; " + ", ".join(versions)
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plan(
    problems: Sequence[str],
    methods: Sequence[str],
    seeds: int,
    budgets: dict[str, int],
    quick: bool = False,
) -> list[Task]:
    return [
        Task(method, problem, seed, method_budget(method, budgets[problem]))
        for problem in problems
        for method in methods
        if applicable(method, problem)
        and not (quick and problem == "svc-digits" and method not in QUICK_SVC_METHODS)
        for seed in range(seeds)
    ]


def report(
    results: Sequence[RunResult],
    methods: Sequence[str],
    env: str,
    command: str,
    wall: float,
    notes: Sequence[str] = (),
) -> str:
    parts = [
        f"Command: `{command}` — {env}; wall time {wall / 60:.1f} min.",
        "Methods (startup trials are sampled at random before the model is used):",
        methods_table(methods),
        regret_tables(results, methods),
        "Bars (issue 9):",
        bars_table(check_bars(results)),
    ]
    parts += [n for n in notes if n]
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 seeds; 50 trials on Branin and Hartmann6; SVC: 25 trials, the bars' methods",
    )
    parser.add_argument("--seeds", type=int, help="default 10 (--quick: 5)")
    parser.add_argument("--budget", type=int, help="trials per run on every problem")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", help="comma-separated labels; default: all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="write the report here")
    parser.add_argument("--json", type=Path, help="write every run's values here")
    parser.add_argument(
        "--from-json", type=Path, help="re-render the report of a saved run (runs nothing)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs already in --json and run only the missing ones",
    )
    args = parser.parse_args(argv)
    if args.resume and not args.json:
        parser.error("--resume needs --json (the file the finished runs are read from)")
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results = saved_results(saved)
        order = saved.get("methods") or all_methods()
        methods = [m for m in order if any(r.method == m for r in results)]
        text = report(
            results,
            methods,
            saved["environment"],
            saved["command"],
            saved.get("wall", math.nan),
            saved.get("notes", ()),
        )
        _write(text, args.markdown)
        return 0

    problems = [p for p in args.problems.split(",") if p]
    for p in problems:
        if p not in PROBLEMS:
            parser.error(f"unknown problem {p}; known: {', '.join(PROBLEMS)}")
    known = all_methods()
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else known
    for m in methods:
        if m not in known:
            parser.error(f"unknown method {m!r}; known: {', '.join(known)}")
    notes = []
    skopt_error = skopt_available()
    if skopt_error is not None and SKOPT in methods:
        methods.remove(SKOPT)
        notes.append(f"scikit-optimize skipped: it does not import here ({skopt_error}).")
    if "bayesianoptimization" not in tunery_algorithms():
        notes.append(
            "tunery bayesianoptimization is not registered in this build, so the GP bars are "
            "not evaluated."
        )
    seeds = args.seeds or (5 if args.quick else 10)
    budgets = dict(QUICK_BUDGETS if args.quick else FULL_BUDGETS)
    if args.budget:
        budgets = dict.fromkeys(budgets, args.budget)

    env = environment()
    shown_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"]
    command = shown_command("bench.quality", shown_argv)
    print(env, file=sys.stderr, flush=True)
    tasks = plan(problems, methods, seeds, budgets, args.quick)
    results: list[RunResult] = []
    earlier_wall = 0.0
    if args.resume and args.json.exists():
        saved = json.loads(args.json.read_text())
        wanted = set(tasks)
        results = [r for r in saved_results(saved) if not r.error and task_of(r) in wanted]
        earlier_wall = float(saved.get("wall", 0.0))
        notes += [n for n in saved.get("notes", ()) if n.startswith(RESUMED) and n not in notes]
        if results:
            notes.append(
                f"{RESUMED} {len(results)} runs come from an earlier invocation: "
                f"`{saved['command']}` — {saved['environment']}."
            )
        done = {task_of(r) for r in results}
        tasks = [t for t in tasks if t not in done]
        print(
            f"resuming: {len(results)} runs kept from {args.json}, {len(tasks)} to run",
            file=sys.stderr,
            flush=True,
        )
    started = time.perf_counter()

    def save(result: RunResult | None = None) -> None:
        if result is not None:
            results.append(result)
        if args.json:
            wall = earlier_wall + time.perf_counter() - started
            save_json(args.json, env, command, wall, methods, notes, results)

    run_tasks(tasks, args.workers, on_result=save)
    save()
    wall = earlier_wall + time.perf_counter() - started
    _write(report(results, methods, env, command, wall, notes), args.markdown)
    return 1 if any(r.error for r in results) else 0


RESUMED = "Resumed:"


def task_of(result: RunResult) -> Task:
    return Task(result.method, result.problem, result.seed, result.budget)


def saved_results(saved: dict[str, Any]) -> list[RunResult]:
    return [RunResult(**{**r, "values": tuple(r["values"])}) for r in saved["runs"]]


def save_json(
    path: Path,
    env: str,
    command: str,
    wall: float,
    methods: Sequence[str],
    notes: Sequence[str],
    results: Sequence[RunResult],
) -> None:
    """Every run so far, written after each one so that an interrupted run can --resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {
        "environment": env,
        "command": command,
        "wall": wall,
        "methods": list(methods),
        "notes": list(notes),
        "runs": [asdict(r) for r in results],
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(saved))
    partial.replace(path)


def shown_command(module: str, argv: Sequence[str]) -> str:
    """The command line as reported: where the report is written does not change it."""
    args = list(argv)
    if "--markdown" in args:
        at = args.index("--markdown")
        del args[at : at + 2]
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


def _write(text: str, markdown: Path | None) -> None:
    print(text)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
