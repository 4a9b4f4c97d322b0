"""``tune()`` throughput: trials per second of a trivial objective, beside Optuna with SQLite.

Each measurement is one whole ``tune()`` (SQLite store, local trials, ``verbose=False``) or one
``optuna.create_study(storage="sqlite:///...")`` + ``study.optimize(n_jobs=P)``, in a fresh
Python process and a fresh folder; the clock starts after the imports and covers opening the
store. The objective returns ``(x - 0.3) ** 2`` at once, so the time per trial at parallel 1 is
the per-trial overhead. Same sampler on both sides (``random``: tunery's random search and
Optuna's ``RandomSampler``; ``tpe``: tunery's tpe and Optuna's ``TPESampler``).

``ms/trial`` is the wall time per trial; ``overhead ms`` is the cost of one more trial: the
wall time of N trials minus that of a run of P trials at parallel P (the same process setup:
imports left to ``tune()``, opening and migrating a fresh store, the fork server's start, one
wave of trials), divided by N - P. At parallel 1 with an objective that returns at once, that
is the per-trial overhead.

``--baseline DIR`` adds the tunery source tree in DIR (e.g. an older commit unpacked with
``git archive <rev> | tar -x -C DIR``) as another row, run with ``PYTHONPATH=DIR``. The
configurations alternate within each repeat (the machine may be shared); the table shows
medians and each row's ratio to Optuna's throughput at the same parallelism.

Run: ``python -m bench.tune_throughput [--trials 200] [--parallel 1 4] [--repeats 3]
[--sampler random] [--baseline DIR] [--markdown]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TUNERY = """
import json, sys, time
from tunery import search, tune

def objective(p):
    return (p["x"] - 0.3) ** 2

trials, parallel, sampler = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
result = tune(objective, {"x": search.double(0.0, 1.0)}, name="bench",
              objective_metric_name="loss", objective_type="minimize",
              algorithm_name=sampler, seed=1, max_trial_count=trials,
              parallel_trial_count=parallel, verbose=False, workdir=".tunery")
seconds = time.perf_counter() - started
ok = sum(t.condition == "Succeeded" for t in result.trials)
print(json.dumps({"seconds": seconds, "succeeded": ok}))
"""

OPTUNA = """
import json, sys, time
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)

def objective(trial):
    return (trial.suggest_float("x", 0.0, 1.0) - 0.3) ** 2

trials, parallel, sampler = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
started = time.perf_counter()
study = optuna.create_study(storage="sqlite:///optuna.db", direction="minimize",
                            sampler=samplers[sampler](seed=1))
study.optimize(objective, n_trials=trials, n_jobs=parallel)
seconds = time.perf_counter() - started
ok = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
print(json.dumps({"seconds": seconds, "succeeded": ok}))
"""


@dataclass(frozen=True)
class Config:
    """One row: a label, the script, and the source tree on PYTHONPATH."""

    label: str
    script: str
    source: Path


def run_once(config: Config, trials: int, parallel: int, sampler: str) -> tuple[float, int]:
    """Seconds and succeeded trials of one run in a fresh process and folder."""
    env = dict(os.environ, PYTHONPATH=str(config.source))
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as folder:
        out = subprocess.run(
            [sys.executable, "-c", config.script, str(trials), str(parallel), sampler],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{config.label} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), int(result["succeeded"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler", choices=("random", "tpe"), default="random")
    parser.add_argument("--baseline", type=Path, help="another tunery source tree to compare")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    configs = [Config("optuna + SQLite", OPTUNA, ROOT), Config("tunery (this tree)", TUNERY, ROOT)]
    if args.baseline is not None:
        configs.append(Config(f"tunery ({args.baseline.name})", TUNERY, args.baseline.resolve()))
    seconds: dict[tuple[str, int], list[float]] = {}
    single: dict[tuple[str, int], list[float]] = {}  # the same run with one wave
    succeeded: dict[tuple[str, int], int] = {}
    for _ in range(args.repeats):
        for parallel in args.parallel:
            for config in configs:
                wall, ok = run_once(config, args.trials, parallel, args.sampler)
                seconds.setdefault((config.label, parallel), []).append(wall)
                succeeded[(config.label, parallel)] = ok
                wall, _ = run_once(config, parallel, parallel, args.sampler)
                single.setdefault((config.label, parallel), []).append(wall)
    load = os.getloadavg()[0]
    print(
        f"# tune() throughput, {args.trials} trivial trials, sampler {args.sampler}, median of "
        f"{args.repeats} — {platform.node()}, {os.cpu_count()} cores, load {load:.1f}, "
        f"Python {platform.python_version()}"
    )
    header = (
        "configuration",
        "parallel",
        "wall s",
        "trials/s",
        "ms/trial",
        "overhead ms",
        "vs optuna",
        "ok",
    )
    rows = []
    for parallel in args.parallel:
        reference = args.trials / statistics.median(seconds[("optuna + SQLite", parallel)])
        for config in configs:
            wall = statistics.median(seconds[(config.label, parallel)])
            one = statistics.median(single[(config.label, parallel)])
            rate = args.trials / wall
            rows.append(
                (
                    config.label,
                    str(parallel),
                    f"{wall:.2f}",
                    f"{rate:.1f}",
                    f"{1000 * wall / args.trials:.1f}",
                    f"{1000 * (wall - one) / max(1, args.trials - parallel):.1f}",
                    f"{rate / reference:.2f}x",
                    str(succeeded[(config.label, parallel)]),
                )
            )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print("  ".join(f"{h:<20}" if i == 0 else f"{h:>9}" for i, h in enumerate(header)))
        for row in rows:
            print("  ".join(f"{c:<20}" if i == 0 else f"{c:>9}" for i, c in enumerate(row)))


if __name__ == "__main__":
    main()
