"""Suggestion latency, as a controller sees it (shared/benchmarks.md §1), and backend quality.

Latency: starts ``python -m suggestion.server`` in a subprocess (one per algorithm, so its
peak RSS is its own), and drives it like a controller: every ``GetSuggestions`` request
carries the experiment and all trials so far (completed, with their objective), asks for 1 or
8 assignments, the objective (Hartmann6, 6-D) is evaluated, and the loop repeats up to
``--trials`` trials (GP: 200, ``--gp-trials``). Latency is the client's round trip (request
encoding, transport, server work, reply). The client encodes each trial once and sends the
bytes it keeps (``--encode incremental``, the default: what a controller that caches each
trial's encoding pays, O(k) per request) or re-serialises the whole request every time
(``--encode full``, what a client holding one protobuf message pays, O(N) per request).
``--prefill N`` starts the experiment with N completed random trials (one cold request, as
after a server restart, then the loop), so long histories are measured in minutes;
``--baseline-root DIR`` also runs, alternating with ours in every repeat, the server of
another tree (e.g. ``git archive <commit> | tar -x -C /tmp/base``) with the same client.
The same loop runs against the libraries called in-process (optuna ask/tell, hyperopt
``tpe.suggest``; optuna's GPSampler beside the GP, to ``--gp-trials``), each in its own
subprocess, timing the ask only.
Reports p50/p95 per history window (medians over ``--repeats`` interleaved runs, so a burst
of load from other processes spoils one repeat, not the result), the server's (or baseline
process's) peak RSS (VmHWM), duplicate assignments, and our speed-up over each like-for-like
library.

Quality (``--quality``): median and IQR of simple regret after 50 trials on Branin and
Hartmann6 for our algorithms (in-process) beside optuna's samplers with the same seeds.

Usage (math threads are pinned to 1 here and in every child process)::

    python -m bench.suggest_latency                 # full run, all registered algorithms
    python -m bench.suggest_latency --quick         # a few minutes
    python -m bench.suggest_latency --algorithms tpe,random --batches 1 --markdown out.md
    python -m bench.suggest_latency --quality --seeds 20
    python -m bench.suggest_latency --algorithms tpe,random --batches 1 --baselines '' \
        --prefill 9000 --trials 10000 --baseline-root /tmp/base      # history 10,000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import datetime as dt  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.problems import branin, hartmann6  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = ((0, 10), (10, 100), (100, 500), (500, 1000), (1000, 9000), (9000, 10000))
"""History windows; the tables show those that hold samples."""
GP_ALGORITHMS = frozenset({"bayesianoptimization"})
"""Algorithms whose run stops at ``--gp-trials``, as benchmarks.md asks for the GP."""

# our algorithm -> the in-process baselines it is compared with
PAIRS = {
    "random": ("optuna random",),
    "tpe": ("optuna TPE (univariate)", "hyperopt TPE"),
    "multivariate-tpe": ("optuna TPE (multivariate)",),
    "cmaes": ("optuna CMA-ES",),
    "bayesianoptimization": ("optuna GPSampler",),
}
BASELINES = (
    "optuna random",
    "optuna TPE (univariate)",
    "optuna TPE (multivariate)",
    "optuna CMA-ES",
    "hyperopt TPE",
    "optuna GPSampler",
)
GP_BASELINES = frozenset({"optuna GPSampler"})
"""Baselines that stop at ``--gp-trials`` (and run only when the GP is benchmarked)."""

# -- objectives (bench.problems) ------------------------------------------------------------------

PROBLEMS: dict[str, tuple[list[tuple[str, float, float]], Callable[..., float], float]] = {
    "branin": ([("x0", -5.0, 10.0), ("x1", 0.0, 15.0)], branin, 0.397887),
    "hartmann6": ([(f"x{i}", 0.0, 1.0) for i in range(6)], hartmann6, -3.322368),
}

# -- results -------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    batch: int
    samples: list[tuple[int, float]] = field(default_factory=list)  # (history, seconds)
    peak_rss_mb: float = math.nan
    duplicates: int = 0
    trials: int = 0
    error: str = ""

    def window(self, lo: int, hi: int) -> np.ndarray:
        return np.array([s for h, s in self.samples if lo <= h < hi]) * 1000

    def stat(self, lo: int, hi: int, q: float) -> float:
        w = self.window(lo, hi)
        return float(np.percentile(w, q)) if len(w) else math.nan


@dataclass
class Repeats:
    """The runs of one configuration; statistics are medians over the repeats."""

    runs: list[Run]

    @property
    def label(self) -> str:
        return self.runs[0].label

    @property
    def batch(self) -> int:
        return self.runs[0].batch

    @property
    def error(self) -> str:
        return next((r.error for r in self.runs if r.error), "")

    def stat(self, lo: int, hi: int, q: float) -> float:
        values = [r.stat(lo, hi, q) for r in self.runs]
        values = [v for v in values if not math.isnan(v)]
        return float(np.median(values)) if values else math.nan

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.runs)


def group(runs: Sequence[Run]) -> list[Repeats]:
    out: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        out.setdefault((r.label, r.batch), []).append(r)
    return [Repeats(v) for v in out.values()]


def _vm_hwm_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# -- our service over gRPC ----------------------------------------------------------------------


def _start_server(root: Path = ROOT) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "suggestion.server", "--port", "0", "--host", "127.0.0.1"),
            "--no-preload",  # the peak RSS then holds only the algorithm under test
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on port "):
        proc.kill()
        raise RuntimeError(f"the suggestion server did not start: {line!r}")
    return proc, int(line.split()[-1])


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (what a cached trial encoding looks like)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def run_ours(
    algorithm: str,
    batch: int,
    n_trials: int,
    seed: int,
    *,
    root: Path = ROOT,
    name: str = "tunery",
    encode: str = "incremental",
    prefill: int = 0,
) -> Run:
    import grpc

    from tunery.api import api_pb2

    run = Run(f"{name} {algorithm} (gRPC)", batch)
    proc, port = _start_server(root)
    try:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
            ],
        )
        grpc.channel_ready_future(channel).result(timeout=30)
        method = "/api.v1.beta1.Suggestion/"
        validate_call = channel.unary_unary(
            method + "ValidateAlgorithmSettings",
            request_serializer=api_pb2.ValidateAlgorithmSettingsRequest.SerializeToString,
            response_deserializer=api_pb2.ValidateAlgorithmSettingsReply.FromString,
        )
        suggest_call = channel.unary_unary(  # takes the request already encoded
            method + "GetSuggestions",
            request_serializer=None,
            response_deserializer=api_pb2.GetSuggestionsReply.FromString,
        )
        step = "0.01" if algorithm == "grid" else ""  # grid needs steps: 101^6 points
        params = [
            api_pb2.ParameterSpec(
                name=f"x{i}",
                parameter_type=api_pb2.DOUBLE,
                feasible_space=api_pb2.FeasibleSpace(min="0", max="1", step=step),
            )
            for i in range(6)
        ]
        settings = [api_pb2.AlgorithmSetting(name="random_state", value=str(seed))]
        experiment = api_pb2.Experiment(
            name=f"bench-{algorithm}-{batch}",
            spec=api_pb2.ExperimentSpec(
                parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(parameters=params),
                objective=api_pb2.ObjectiveSpec(
                    type=api_pb2.MINIMIZE, objective_metric_name="loss"
                ),
                algorithm=api_pb2.AlgorithmSpec(
                    algorithm_name=algorithm, algorithm_settings=settings
                ),
                parallel_trial_count=batch,
            ),
        )
        # as Katib's controller does first; this also imports the algorithm's libraries
        validate_call(api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=60)
        request = api_pb2.GetSuggestionsRequest(experiment=experiment)
        encoded = bytearray(_field(1, experiment.SerializeToString()))  # experiment + trials
        seen: set[tuple[float, ...]] = set()

        def add_trial(assignments: Sequence[api_pb2.ParameterAssignment]) -> None:
            values = {a.name: float(a.value) for a in assignments}
            key = tuple(values[f"x{i}"] for i in range(6))
            run.duplicates += key in seen
            seen.add(key)
            trial = request.trials.add(name=f"{experiment.name}-{len(request.trials):06d}")
            trial.spec.parameter_assignments.assignments.extend(assignments)
            trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
            trial.status.observation.metrics.add(name="loss", value=repr(hartmann6(values)))
            encoded.extend(_field(2, trial.SerializeToString()))

        rng = np.random.default_rng(seed)
        for point in rng.random((prefill, 6)).tolist():
            add_trial(
                [
                    api_pb2.ParameterAssignment(name=f"x{i}", value=repr(v))
                    for i, v in enumerate(point)
                ]
            )
        while len(request.trials) < n_trials:
            count = min(batch, n_trials - len(request.trials))
            history = len(request.trials)
            t0 = time.perf_counter()
            if encode == "full":
                request.current_request_number = count
                data = request.SerializeToString()
            else:  # field 4, current_request_number, after the cached trials
                data = bytes(encoded) + _varint(4 << 3) + _varint(count)
            reply = suggest_call(data, timeout=600)
            if history > prefill or not prefill:  # the first after a prefill runs cold
                run.samples.append((history, time.perf_counter() - t0))
            for pa in reply.parameter_assignments:
                add_trial(pa.assignments)
        run.trials = len(request.trials)
        run.peak_rss_mb = _vm_hwm_mb(proc.pid)
        channel.close()
    except Exception as exc:  # report and go on with the other runs
        detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)  # type: ignore[attr-defined]
        run.error = f"{type(exc).__name__}: {detail}".splitlines()[0][:120]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return run


# -- baselines in-process (each in its own process) ---------------------------------------------


def _baseline_worker(label: str, batch: int, n_trials: int, seed: int, prefill: int = 0) -> Run:
    warnings.filterwarnings("ignore")
    run = Run(f"{label} (in-process)", batch)
    names = [f"x{i}" for i in range(6)]
    if label.startswith("optuna"):
        import optuna
        from optuna.distributions import FloatDistribution

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        samplers = {
            "optuna random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "optuna TPE (univariate)": lambda: optuna.samplers.TPESampler(
                seed=seed, multivariate=False
            ),
            "optuna TPE (multivariate)": lambda: optuna.samplers.TPESampler(
                seed=seed, multivariate=True
            ),
            "optuna CMA-ES": lambda: optuna.samplers.CmaEsSampler(seed=seed),
            "optuna GPSampler": lambda: optuna.samplers.GPSampler(seed=seed),
        }
        study = optuna.create_study(sampler=samplers[label]())
        dists = {n: FloatDistribution(0.0, 1.0) for n in names}
        rng = np.random.default_rng(seed)  # the same prefill as our server gets
        for point in rng.random((prefill, 6)).tolist():
            params = dict(zip(names, point, strict=True))
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, value=hartmann6(params)
                )
            )
        done = prefill
        while done < n_trials:
            count = min(batch, n_trials - done)
            t0 = time.perf_counter()
            asked = [study.ask(dists) for _ in range(count)]
            if done > prefill or not prefill:  # as for ours: the first after a prefill is cold
                run.samples.append((done, time.perf_counter() - t0))
            for trial in asked:
                study.tell(trial, hartmann6(trial.params))
            done += count
    elif prefill:
        raise ValueError(f"{label}: --prefill is supported for optuna baselines only")
    elif label == "hyperopt TPE":
        from hyperopt import Domain, Trials, base, hp, tpe

        space = {n: hp.uniform(n, 0.0, 1.0) for n in names}
        domain = Domain(lambda _: 0.0, space)
        trials = Trials()
        rng = np.random.default_rng(seed)
        done = 0
        while done < n_trials:
            count = min(batch, n_trials - done)
            t0 = time.perf_counter()
            ids = trials.new_trial_ids(count)
            docs = tpe.suggest(ids, domain, trials, int(rng.integers(2**31 - 1)))
            trials.insert_trial_docs(docs)
            trials.refresh()
            run.samples.append((done, time.perf_counter() - t0))
            for doc in trials.trials[-count:]:
                params = {k: float(v[0]) for k, v in doc["misc"]["vals"].items()}
                doc["state"] = base.JOB_STATE_DONE
                doc["result"] = {"loss": hartmann6(params), "status": "ok"}
            trials.refresh()
            done += count
    else:
        raise ValueError(label)
    run.trials = n_trials
    run.peak_rss_mb = _vm_hwm_mb()
    return run


def run_baseline(label: str, batch: int, n_trials: int, seed: int, prefill: int = 0) -> Run:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            future = pool.submit(_baseline_worker, label, batch, n_trials, seed, prefill)
            return future.result()
        except Exception as exc:
            return Run(f"{label} (in-process)", batch, error=f"{type(exc).__name__}: {exc}")


# -- reporting ----------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def windows(runs: Sequence[Run]) -> list[tuple[int, int]]:
    """The windows in which some run has samples."""
    return [(lo, hi) for lo, hi in WINDOWS if any(len(r.window(lo, hi)) for r in runs)]


def latency_table(runs: Sequence[Run]) -> list[list[str]]:
    """p50 / p95 per window (medians over repeats), peak RSS, duplicates."""
    shown = windows(runs)
    header = ["implementation", "batch"]
    header += [f"{lo}-{hi} p50 / p95 ms" for lo, hi in shown]
    header += ["peak RSS MB", "duplicates"]
    rows = [header]
    for r in group(runs):
        if r.error:
            rows.append([r.label, str(r.batch), f"error: {r.error}"] + [""] * (len(header) - 3))
            continue
        cells = [r.label, str(r.batch)]
        for lo, hi in shown:
            p50, p95 = r.stat(lo, hi, 50), r.stat(lo, hi, 95)
            cells.append("-" if math.isnan(p50) else f"{_fmt(p50)} / {_fmt(p95)}")
        ours = "(gRPC)" in r.label
        cells += [_fmt(r.peak_rss_mb), str(r.duplicates) if ours else "-"]
        rows.append(cells)
    return rows


def ratio_table(runs: Sequence[Run]) -> list[list[str]]:
    """Baseline p50 / our p50 per window (how many times faster we are)."""
    by_label = {(r.label, r.batch): r for r in group(runs) if not r.error}
    shown = windows(runs)
    header = ["ours", "baseline", "batch"] + [f"{lo}-{hi} speed-up" for lo, hi in shown]
    rows = [header]
    for ours, baselines in PAIRS.items():
        for batch in sorted({r.batch for r in runs}):
            mine = by_label.get((f"tunery {ours} (gRPC)", batch))
            if mine is None:
                continue
            others = [(b, f"{b} (in-process)") for b in baselines]
            others.append((f"baseline {ours} (gRPC)", f"baseline {ours} (gRPC)"))
            for b, label in others:
                other = by_label.get((label, batch))
                if other is None:
                    continue
                cells = [ours, b, str(batch)]
                for lo, hi in shown:
                    a, o = mine.stat(lo, hi, 50), other.stat(lo, hi, 50)
                    cells.append("-" if math.isnan(a) or math.isnan(o) else f"{o / a:.1f}")
                rows.append(cells)
    return rows


def render(rows: list[list[str]], markdown: bool) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment() -> str:
    import cmaes
    import grpc
    import optuna
    import scipy

    versions = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"scipy {scipy.__version__}",
        f"grpcio {grpc.__version__}",
        f"cmaes {cmaes.__version__}",
        f"optuna {optuna.__version__}",
    ]
    try:
        import hyperopt

        versions.append(f"hyperopt {hyperopt.__version__}")
    except ImportError:
        pass
    load = os.getloadavg()
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average at start {load[0]:.1f}; " + ", ".join(versions)
    )


# -- quality ------------------------------------------------------------------------------------


def _quality_ours(algorithm: str, problem: str, seed: int, n: int) -> float:
    from suggestion.algorithms import get_algorithm
    from suggestion.algorithms.base import SuggestRequest, parse_settings
    from tunery.space import Parameter, SearchSpace
    from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

    bounds, f, fstar = PROBLEMS[problem]
    space = SearchSpace(tuple(Parameter.double(name, lo, hi) for name, lo, hi in bounds))
    cls = get_algorithm(algorithm)
    algo = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, algorithm))
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    trials: list[TrialResult] = []
    for i in range(n):
        [a] = algo.suggest(SuggestRequest(space, objective, trials, 1, experiment_name="q"))
        value = f(a)
        trials.append(TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, value))
    return min(t.value for t in trials if t.value is not None) - fstar


def _quality_optuna(label: str, problem: str, seed: int, n: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    samplers = {
        "optuna random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "optuna TPE (univariate)": lambda: optuna.samplers.TPESampler(
            seed=seed, multivariate=False
        ),
        "optuna TPE (multivariate)": lambda: optuna.samplers.TPESampler(
            seed=seed, multivariate=True
        ),
        "optuna CMA-ES": lambda: optuna.samplers.CmaEsSampler(seed=seed),
    }
    bounds, f, fstar = PROBLEMS[problem]
    study = optuna.create_study(sampler=samplers[label]())
    study.optimize(
        lambda t: f({name: t.suggest_float(name, lo, hi) for name, lo, hi in bounds}),
        n_trials=n,
    )
    return study.best_value - fstar


QUALITY_PAIRS = (
    ("random", "optuna random"),
    ("sobol", None),
    ("tpe", "optuna TPE (univariate)"),
    ("multivariate-tpe", "optuna TPE (multivariate)"),
    ("cmaes", "optuna CMA-ES"),
)


def quality(seeds: int, n: int, algorithms: Sequence[str]) -> list[list[str]]:
    rows = [["problem", "implementation", f"median regret @{n}", "IQR"]]
    for problem in PROBLEMS:
        for ours, baseline in QUALITY_PAIRS:
            if ours not in algorithms:
                continue
            for label, fn in (
                (f"tunery {ours}", lambda s, o=ours, p=problem: _quality_ours(o, p, s, n)),
                (baseline, lambda s, b=baseline, p=problem: _quality_optuna(b, p, s, n)),
            ):
                if label is None:
                    continue
                r = np.array([fn(s) for s in range(seeds)])
                q25, q50, q75 = np.percentile(r, [25, 50, 75])
                rows.append([problem, label, f"{q50:.3g}", f"[{q25:.3g}, {q75:.3g}]"])
                print(render([rows[0], rows[-1]], False).splitlines()[-1], flush=True)
    return rows


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    from suggestion.algorithms import REGISTRY, get_algorithm

    black_box = [a for a in sorted(REGISTRY) if "checkpoints" not in get_algorithm(a).capabilities]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", default=",".join(black_box))
    parser.add_argument("--baselines", default=",".join(BASELINES), help="'' for none")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument(
        "--gp-trials", type=int, default=200, help="trials of the GP and optuna's GPSampler"
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="start with this many random completed trials"
    )
    parser.add_argument(
        "--encode", choices=("incremental", "full"), default="incremental", help="see above"
    )
    parser.add_argument(
        "--baseline-root", type=Path, help="also run the server of this checkout, alternating"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per configuration (medians are shown)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="600 trials, two baselines, one repeat"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--quality", action="store_true", help="regret instead of latency")
    parser.add_argument("--seeds", type=int, default=10, help="--quality: seeds")
    parser.add_argument("--budget", type=int, default=50, help="--quality: trials")
    args = parser.parse_args(argv)
    algorithms = [a for a in args.algorithms.split(",") if a]
    for a in algorithms:
        if a not in REGISTRY:
            parser.error(f"unknown algorithm {a}; registered: {', '.join(sorted(REGISTRY))}")
    env = environment()
    print(env, flush=True)
    if args.quality:
        rows = quality(args.seeds, args.budget, algorithms)
        text = render(rows, False)
        print("\n" + text)
        if args.markdown:
            args.markdown.write_text(f"{env}\n\n{render(rows, True)}\n")
        return
    batches = [int(b) for b in args.batches.split(",") if b]
    baselines = [b for b in args.baselines.split(",") if b]
    if "bayesianoptimization" not in algorithms:
        baselines = [b for b in baselines if b not in GP_BASELINES]
    n_trials = args.trials
    if args.quick:
        n_trials = min(n_trials, 600)
        args.repeats = 1
        baselines = [b for b in baselines if b in ("optuna TPE (univariate)", "optuna random")]
    runs: list[Run] = []

    def report(run: Run, seconds: float) -> None:
        runs.append(run)
        shown = windows([run])
        lo, hi = shown[-1] if shown else (0, 0)
        tail = run.stat(lo, hi, 50)
        note = run.error or (f"p50 {lo}-{hi} {tail:.2f} ms" if not math.isnan(tail) else "")
        load = os.getloadavg()[0]
        print(
            f"  {run.label} batch {run.batch}: {seconds:.0f}s {note} (load {load:.1f})", flush=True
        )

    for repeat in range(args.repeats):  # repeats interleave, so a load burst hits one only
        for batch in batches:
            for algorithm in algorithms:
                n = min(n_trials, args.gp_trials if algorithm in GP_ALGORITHMS else n_trials)
                roots = [(ROOT, "tunery")]
                if args.baseline_root is not None:
                    roots.append((args.baseline_root.resolve(), "baseline"))
                for root, name in roots if repeat % 2 == 0 else roots[::-1]:
                    t0 = time.time()
                    run = run_ours(
                        algorithm,
                        batch,
                        n,
                        args.seed + repeat,
                        root=root,
                        name=name,
                        encode=args.encode,
                        prefill=args.prefill,
                    )
                    report(run, time.time() - t0)
            for label in baselines:
                t0 = time.time()
                n = min(n_trials, args.gp_trials if label in GP_BASELINES else n_trials)
                run = run_baseline(label, batch, n, args.seed + repeat, args.prefill)
                report(run, time.time() - t0)
    sys.stdout.flush()
    print()
    print(render(latency_table(runs), False))
    print()
    print(render(ratio_table(runs), False))
    if args.markdown:
        args.markdown.write_text(
            f"{env}\n\n{render(latency_table(runs), True)}\n\n"
            f"Speed-up (baseline p50 / tunery p50):\n\n{render(ratio_table(runs), True)}\n"
        )


if __name__ == "__main__":
    main()
