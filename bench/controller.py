"""Local controller overhead: how close ``tunery run`` gets to the ideal wall time.

Two measurements from shared/benchmarks.md §4, each a whole experiment run by the real local
controller (SQLite store, local processes, in-process random search, the stdout collector):

1. ``sleep``: N trials of ``sleep S`` (then one metric line) at parallel P. Ideal wall time is
   ``ceil(N / P) * S``; the ratio wall/ideal is the controller's overhead (bar: <= 1.05 for
   200 x 1 s at parallel 8).
2. ``trivial``: N trials that only print one metric (``echo loss=...``), at parallel P:
   trials per second (bar: >= 20 on 2 cores).

Run: ``python -m bench.controller [--trials 200] [--parallel 8] [--seconds 1] [--markdown]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.local import LocalSettings, run_until_done, submit
from tunery.experiment import load_experiment
from tunery.store import open_store


def experiment(name: str, command: list[str], trials: int, parallel: int) -> dict[str, Any]:
    doc = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": parallel,
            "maxTrialCount": trials,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "main", "command": command}]}
                        }
                    },
                },
            },
        },
    }
    return load_experiment(doc).to_document()


def run_one(workdir: Path, doc: dict[str, Any]) -> tuple[float, int]:
    store = open_store(f"sqlite:///{workdir}/bench.db")
    name, _ = submit(store, doc, workdir)
    settings = LocalSettings(logs_dir=workdir / "logs")
    started = time.perf_counter()
    run_until_done(store, name, settings)
    wall = time.perf_counter() - started
    succeeded = sum(t.condition.value == "Succeeded" for t in store.list_trials(name))
    store.close()
    return wall, succeeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--trivial-trials", type=int, default=200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sleep_doc = experiment(
            "bench-sleep",
            ["sh", "-c", f"sleep {args.seconds}; echo loss=${{trialParameters.x}}"],
            args.trials,
            args.parallel,
        )
        wall, ok = run_one(work / "sleep", sleep_doc)
        ideal = math.ceil(args.trials / args.parallel) * args.seconds
        rows.append(
            (
                f"{args.trials} x sleep {args.seconds:g}s, parallel {args.parallel}",
                f"{wall:.2f} s",
                f"ideal {ideal:.2f} s",
                f"wall/ideal {wall / ideal:.3f}",
                f"{ok} succeeded",
            )
        )
        trivial_doc = experiment(
            "bench-trivial",
            ["echo", "loss=${trialParameters.x}"],
            args.trivial_trials,
            args.parallel,
        )
        wall, ok = run_one(work / "trivial", trivial_doc)
        rows.append(
            (
                f"{args.trivial_trials} trivial trials, parallel {args.parallel}",
                f"{wall:.2f} s",
                "",
                f"{args.trivial_trials / wall:.1f} trials/s",
                f"{ok} succeeded",
            )
        )
    header = ("experiment", "wall", "ideal", "result", "trials")
    print(
        f"# controller overhead — {platform.node()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in rows:
            print("  ".join(f"{c:<42}" if i == 0 else f"{c:<18}" for i, c in enumerate(row)))


if __name__ == "__main__":
    main()
