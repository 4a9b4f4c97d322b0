"""Early stopping (shared/benchmarks.md §3): epochs medianstop saves, and what it costs.

Called as ``python -m bench.earlystop`` (alone or from ``bench.run_all``).

The task is the PyTorch MLP on scikit-learn's digits of ``examples/pytorch-digits`` (the same
model, data split and search space: lr log-uniform in [0.001, 0.5], momentum in [0.5, 0.99],
hidden units 16..256 step 16; SGD with momentum, mini-batches of 128, 20 epochs, validation
accuracy reported after every epoch and maximised). Per seed, tunery's ``random`` algorithm
proposes 40 trials (``random_state`` = seed; random search does not look at results, so both
arms get the same proposals) and each trial is trained once to 20 epochs, with the torch seed
derived from (seed, trial).

Without early stopping every trial runs its 20 epochs. With ``medianstop``, the decisions are
replayed over those curves in proposal order as tunery's controller would take them with one
trial at a time: trial i is judged after every epoch against the trials that completed
(Succeeded) before it, through the stopper's own ``prepare``/``decide_curve``; a stopped trial
keeps only its prefix and does not join the completed set. This replay is exact because a
stopped trial's curve prefix is identical to the no-stop run's (same seed, same computation).

Reported per seed and as the median over seeds: epochs run, epochs saved (%), the best final
(epoch-20) accuracy with and without stopping (only trials that ran to the end have one), the
loss, and whether the no-stop best trial survived. Bar: >= 30% saved and the best result
unchanged in the median seed.

Usage::

    python -m bench.earlystop                    # 5 seeds x 40 trials x 20 epochs
    python -m bench.earlystop --seeds 3 --markdown out.md
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
import multiprocessing
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 20
TRIALS = 40
BATCH = 128
METRIC = "accuracy"
SAVED_BAR = 30.0
SETTINGS: dict[str, dict[str, str]] = {
    "medianstop defaults (min_trials_required 3, start_step 4)": {},
    "medianstop, start_step 5 (examples/pytorch-digits)": {
        "min_trials_required": "3",
        "start_step": "5",
    },
}
BAR_SETTINGS = next(iter(SETTINGS))
"""The bar is judged with the stopper's defaults (Katib's), what a user gets unconfigured."""


# -- proposals and training (in worker processes) ------------------------------------------------


def search_space() -> Any:
    from tunery.space import Distribution, Parameter, SearchSpace

    return SearchSpace(
        (
            Parameter.double("lr", 0.001, 0.5, distribution=Distribution.LOG_UNIFORM),
            Parameter.double("momentum", 0.5, 0.99),
            Parameter.integer("hidden", 16, 256, step=16),
        )
    )


def proposals(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` assignments from tunery's random search with ``random_state=seed``."""
    from suggestion.algorithms import get_algorithm
    from suggestion.algorithms.base import SuggestRequest, parse_settings
    from tunery.trials import Objective, ObjectiveType

    cls = get_algorithm("random")
    algorithm = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, "random"))
    request = SuggestRequest(
        search_space(), Objective(ObjectiveType.MAXIMIZE, METRIC), [], n, "earlystop-bench"
    )
    return [dict(a) for a in algorithm.suggest(request)]


_DATA: dict[str, Any] = {}


def _data() -> tuple[Any, Any, Any, Any]:
    if not _DATA:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            x / 16.0, y, test_size=0.25, random_state=0, stratify=y
        )
        _DATA["split"] = (
            torch.tensor(x_train, dtype=torch.float32),
            torch.tensor(x_val, dtype=torch.float32),
            torch.tensor(y_train, dtype=torch.long),
            torch.tensor(y_val, dtype=torch.long),
        )
    return _DATA["split"]


def train_curve(params: Mapping[str, Any], seed: int, epochs: int = EPOCHS) -> list[float]:
    """Validation accuracy after each epoch of the example's MLP with these parameters."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    x_train, x_val, y_train, y_val = _data()
    torch.manual_seed(seed)
    hidden = int(params["hidden"])
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=float(params["lr"]), momentum=float(params["momentum"])
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        curve.append(float(accuracy))
    return curve


@dataclass(frozen=True)
class SeedCurves:
    seed: int
    params: tuple[dict[str, Any], ...]
    curves: tuple[tuple[float, ...], ...]
    cpu_seconds_per_epoch: float


def compute_curves(seed: int, trials: int = TRIALS, epochs: int = EPOCHS) -> SeedCurves:
    params = proposals(seed, trials)
    _data()  # loading the data and torch is not training time
    started = time.process_time()
    curves = tuple(tuple(train_curve(p, seed * 1000 + i, epochs)) for i, p in enumerate(params))
    elapsed = time.process_time() - started
    return SeedCurves(seed, tuple(params), curves, elapsed / (trials * epochs))


def _init_worker() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)


# -- replaying medianstop ------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """One seed with one stopper configuration."""

    seed: int
    epochs_run: int
    epochs_full: int
    stopped: int
    best_full: float
    best_stopped: float
    best_trial_kept: bool

    @property
    def saved_percent(self) -> float:
        return 100.0 * (1 - self.epochs_run / self.epochs_full)

    @property
    def lost(self) -> float:
        return self.best_full - self.best_stopped


def replay(curves: Sequence[Sequence[float]], settings: Mapping[str, str]) -> list[int | None]:
    """The epoch at which medianstop stops each trial (None: ran to the end), trials taken
    one at a time in order, each judged after every epoch against the completed ones."""
    from earlystop import get_early_stopper
    from earlystop.base import RunningCurve
    from tunery.trials import Objective, ObjectiveType, Observation

    stopper = get_early_stopper("medianstop").from_settings(settings)
    objective = Objective(ObjectiveType.MAXIMIZE, METRIC)
    completed: list[list[Observation]] = []
    stops: list[int | None] = []
    for curve in curves:
        policy = stopper.prepare(objective, completed)
        running = RunningCurve(objective)
        observations: list[Observation] = []
        stopped_at = None
        for epoch, accuracy in enumerate(curve, start=1):
            observation = Observation.of(METRIC, accuracy, epoch - 1)
            observations.append(observation)
            running.add(observation)
            if policy.decide_curve(running).stop:
                stopped_at = epoch
                break
        stops.append(stopped_at)
        if stopped_at is None:
            completed.append(observations)
    return stops


def summarise(data: SeedCurves, stops: Sequence[int | None]) -> Replay:
    epochs = len(data.curves[0])
    finals = [c[-1] for c in data.curves]
    best_index = max(range(len(finals)), key=finals.__getitem__)
    kept = [f for f, s in zip(finals, stops, strict=True) if s is None]
    return Replay(
        seed=data.seed,
        epochs_run=sum(epochs if s is None else s for s in stops),
        epochs_full=epochs * len(finals),
        stopped=sum(s is not None for s in stops),
        best_full=max(finals),
        best_stopped=max(kept) if kept else float("nan"),
        best_trial_kept=stops[best_index] is None,
    )


# -- report --------------------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(" --- " for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def median_seed(replays: Sequence[Replay]) -> Replay:
    """The seed whose epochs saved is the median (lower median for an even count)."""
    ordered = sorted(replays, key=lambda r: r.saved_percent)
    return ordered[(len(ordered) - 1) // 2]


def report(
    seeds: Sequence[SeedCurves], results: Mapping[str, list[Replay]], env: str, command: str
) -> str:
    per_epoch = statistics.median(s.cpu_seconds_per_epoch for s in seeds) * 1000
    trials = len(seeds[0].curves)
    epochs = len(seeds[0].curves[0])
    parts = [
        f"Command: `{command}` — {env}; {trials} trials x {epochs} epochs per seed, "
        f"{len(seeds)} seeds, training {per_epoch:.1f} ms of CPU per epoch (median over seeds, "
        "1 thread).",
    ]
    rows = [
        [
            "stopper",
            "seed",
            "epochs run",
            "saved",
            "trials stopped",
            "best final acc. (no stop)",
            "best final acc. (stop)",
            "lost",
            "best trial kept",
        ]
    ]
    summary = [
        [
            "stopper",
            "median saved",
            "median lost",
            "median seed by saved: saved / lost",
            "seeds with best kept",
            "bar (>= 30% saved, best unchanged in the median seed)",
        ]
    ]
    for label, replays in results.items():
        for r in replays:
            rows.append(
                [
                    label,
                    str(r.seed),
                    f"{r.epochs_run} / {r.epochs_full}",
                    f"{r.saved_percent:.1f}%",
                    str(r.stopped),
                    f"{r.best_full:.4f}",
                    f"{r.best_stopped:.4f}",
                    f"{r.lost:.4f}",
                    "yes" if r.best_trial_kept else "no",
                ]
            )
        saved = statistics.median(r.saved_percent for r in replays)
        lost = statistics.median(r.lost for r in replays)
        mid = median_seed(replays)
        ok = saved >= SAVED_BAR and lost == 0
        verdict = "pass" if ok else "FAIL"
        if label != BAR_SETTINGS:
            verdict += " (informative)"
        summary.append(
            [
                label,
                f"{saved:.1f}%",
                f"{lost:.4f}",
                f"seed {mid.seed}: {mid.saved_percent:.1f}% / {mid.lost:.4f}",
                f"{sum(r.best_trial_kept for r in replays)} of {len(replays)}",
                verdict,
            ]
        )
    parts += [_table(summary), "Per seed:", _table(rows)]
    return "\n\n".join(parts) + "\n"


def environment() -> str:
    import numpy
    import torch

    load = os.getloadavg()
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at start; Python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the same as the default run")
    parser.add_argument("--markdown", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    args_shown = list(sys.argv[1:] if argv is None else argv)
    if "--markdown" in args_shown:  # where the report goes does not change it
        at = args_shown.index("--markdown")
        del args_shown[at : at + 2]
    command = " ".join(["python", "-m", "bench.earlystop", *map(shlex.quote, args_shown)])
    env = environment()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        args.workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = [
            pool.submit(compute_curves, seed, args.trials, args.epochs)
            for seed in range(args.seeds)
        ]
        seeds = [f.result() for f in futures]
    results = {
        label: [summarise(s, replay(s.curves, settings)) for s in seeds]
        for label, settings in SETTINGS.items()
    }
    text = report(seeds, results, env, command)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
