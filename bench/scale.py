"""Scale: does a trial cost the same at the end of a long experiment as at its start?

Two measurements (issue 17), each run in a fresh Python process so that peak RSS is its own:

1. ``run``: one experiment of N trivial trials (``echo loss=...``) at parallel P through the
   real local controller (``controller.local.run_until_done``: local processes, in-process
   random search, the stdout collector) on SQLite or PostgreSQL (a scratch schema of
   ``test`` at 127.0.0.1:5432, dropped afterwards). Prints trials/s over the first and the last
   W finished trials and the controller's peak RSS.
2. ``inspect``: a store of N finished trials, filled in bulk through the Store API
   (``Store.create_trials``) with a status document as the reconciler writes it, then the
   wall time of the whole commands ``tunery status``, ``tunery trials --sort objective | head``
   and ``tunery best`` (medians of 3).

``compare`` runs both for a baseline checkout (``--baseline DIR``, e.g. the main commit
exported with ``git archive``) and this tree, alternating, in one session (the machine is
shared), and prints the ratios. The runner imports whatever is first on ``PYTHONPATH``, so the
same file measures either tree.

Run: ``python -P bench/scale.py compare [--baseline /tmp/base] [--trials 10000] [--window 1000]
[--parallel 8] [--backends sqlite,postgresql] [--store-trials 100000] [--repeats 1]``
(``python -m bench.scale compare`` from the repository root works too; ``-P`` keeps the
script's folder, which holds ``bench/controller.py``, off the import path).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve()


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A scratch database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir}/bench.db"
        return
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.engine.make_url(POSTGRES_ADMIN_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def experiment_document(name: str, trials: int, parallel: int) -> dict[str, Any]:
    from tunery.experiment import load_experiment

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
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "command": ["echo", "loss=${trialParameters.x}"],
                                    }
                                ]
                            }
                        }
                    },
                },
            },
        },
    }
    return load_experiment(doc).to_document()


# -- 1. run -----------------------------------------------------------------------------------


def run_one(backend: str, trials: int, parallel: int, window: int) -> dict[str, Any]:
    """One experiment in this process; the finish time of every trial, by step results."""
    from controller.local import LocalSettings, run_until_done, submit
    from tunery.store import open_store

    with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
        work = Path(tmp)
        store = open_store(url)
        name, _ = submit(store, experiment_document("scale", trials, parallel), work)
        finished_at: list[float] = []

        def progress(result: Any, _trials: Any) -> None:
            now = time.perf_counter()
            finished_at.extend([now] * result.finished)

        started = time.perf_counter()
        run_until_done(store, name, LocalSettings(logs_dir=work / "logs"), on_progress=progress)
        wall = time.perf_counter() - started
        succeeded = sum(t.condition.value == "Succeeded" for t in store.list_trials(name))
        store.close()
    window = min(window, len(finished_at) // 2)
    first = window / (finished_at[window - 1] - started)
    last = window / (finished_at[-1] - finished_at[-window - 1])
    edges = [started, *finished_at[window - 1 :: window]]  # every window, to show a trend
    windows = [round(window / (b - a), 1) for a, b in itertools.pairwise(edges) if b > a]
    return {
        "backend": backend,
        "trials": trials,
        "succeeded": succeeded,
        "wall_s": round(wall, 2),
        "first_per_s": round(first, 1),
        "last_per_s": round(last, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "windows_per_s": windows,
    }


# -- 2. inspect -------------------------------------------------------------------------------


def fill(url: str, trials: int, *, full_lists: bool) -> None:
    """A finished experiment of ``trials`` trials, in bulk, with its status document.

    ``full_lists`` writes the trial lists as the baseline's reconciler did (every name)."""
    from controller import status
    from controller.trial_view import TrialView
    from tunery.store import TrialRecord, open_store
    from tunery.trials import TrialCondition

    store = open_store(url)
    doc = experiment_document("big", trials, 8)
    store.create_experiment("big", doc)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    view = TrialView(__import__("controller.reconcile").reconcile.objective_from_spec(doc["spec"]))
    batch = []
    for i in range(trials):
        loss = f"{((i * 7919) % trials) / trials:.6f}"
        batch.append(
            TrialRecord(
                name=f"big-{i:06d}",
                experiment_name="big",
                assignment={"x": f"{(i * 0.618) % 1:.6f}"},
                condition=TrialCondition.SUCCEEDED,
                reason="TrialSucceeded",
                message="Trial has succeeded",
                labels={"katib.kubeflow.org/experiment": "big"},
                created_at=t0,
                start_time=t0,
                completion_time=t0,
                runner_handle={"pid": 1, "log": f"/tmp/big-{i}.log"},
                observation={
                    "metrics": [{"name": "loss", "min": loss, "max": loss, "latest": loss}]
                },
            )
        )
        if len(batch) == 5000:
            store.create_trials(batch)
            view.apply(batch)
            batch = []
    if batch:
        store.create_trials(batch)
        view.apply(batch)
    reason = status.ExperimentReason.MAX_TRIALS_REACHED
    state = status.build_status(
        {}, view, ("Succeeded", reason, status.MESSAGES[reason]), dt.datetime.now(dt.UTC)
    )
    if full_lists:
        state["succeededTrialList"] = [f"big-{i:06d}" for i in range(trials)]
    store.update_experiment("big", status=state)
    store.close()


def time_command(pythonpath: str, url: str, shell: str) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath, "TUNERY_DB_URL": url}
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 141):  # 141: SIGPIPE from head, as in a terminal
        raise RuntimeError(f"{shell} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


COMMANDS = {
    "tunery status": "tunery status big",
    "tunery trials --sort objective | head": "tunery trials big --sort objective | head",
    "tunery best": "tunery best big",
}


# -- compare ----------------------------------------------------------------------------------


def sub(pythonpath: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-P", str(HERE), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args} under {pythonpath} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    trees = {"this": str(HERE.parent.parent)}
    if args.baseline:
        trees = {"baseline": str(Path(args.baseline).resolve()), **trees}
    print(
        f"# scale — {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for backend in args.backends.split(","):
        if args.trials <= 0:
            break
        results: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
        for _ in range(args.repeats):
            for label in trees:
                run_args = ["run", backend, str(args.trials), str(args.parallel), str(args.window)]
                results[label].append(sub(trees[label], *run_args))
                print(f"  {label} {backend}: {results[label][-1]}", flush=True)
        med = {
            label: {
                key: statistics.median(r[key] for r in rs)
                for key in ("first_per_s", "last_per_s", "peak_rss_mb", "wall_s")
            }
            for label, rs in results.items()
        }
        print(
            f"| {backend} | {args.trials} trivial, parallel {args.parallel} | "
            + " | ".join(
                f"{label}: first {m['first_per_s']:.0f}/s, last {m['last_per_s']:.0f}/s "
                f"(last/first {m['last_per_s'] / m['first_per_s']:.2f}), "
                f"{m['peak_rss_mb']:.0f} MB, {m['wall_s']:.0f} s"
                for label, m in med.items()
            )
            + (
                f" | last-window ratio this/baseline "
                f"{med['this']['last_per_s'] / med['baseline']['last_per_s']:.2f} |"
                if "baseline" in med
                else " |"
            )
        )
    if args.store_trials > 0:
        with tempfile.TemporaryDirectory() as tmp:
            urls = {"this": f"sqlite:///{tmp}/this.db"}
            sub(trees["this"], "fill", urls["this"], str(args.store_trials), "bounded")
            if "baseline" in trees:
                urls = {"baseline": f"sqlite:///{tmp}/base.db", **urls}
                sub(trees["this"], "fill", urls["baseline"], str(args.store_trials), "full")
                sub(trees["this"], "downgrade", urls["baseline"])
            times: dict[str, dict[str, list[float]]] = {
                label: {c: [] for c in COMMANDS} for label in trees
            }
            for _ in range(3):
                for label, url in urls.items():
                    for command, shell in COMMANDS.items():
                        times[label][command].append(time_command(trees[label], url, shell))
            for command in COMMANDS:
                cells = [
                    f"{label} {statistics.median(times[label][command]):.2f} s" for label in trees
                ]
                if "baseline" in trees:
                    ratio = statistics.median(times["this"][command]) / statistics.median(
                        times["baseline"][command]
                    )
                    cells.append(f"ratio {ratio:.2f}")
                print(
                    f"| `{command}` | {args.store_trials} trials, SQLite | "
                    + " | ".join(cells)
                    + " |",
                    flush=True,
                )


def downgrade(url: str) -> None:
    """Bring a store filled by this tree back to the baseline's schema revision 0001."""
    import sqlalchemy as sa
    from alembic import command

    from tunery.store.migrations import alembic_config

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "0001")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("backend")
    run.add_argument("trials", type=int)
    run.add_argument("parallel", type=int)
    run.add_argument("window", type=int)
    filler = commands.add_parser("fill")
    filler.add_argument("url")
    filler.add_argument("trials", type=int)
    filler.add_argument("lists", choices=["bounded", "full"])
    down = commands.add_parser("downgrade")
    down.add_argument("url")
    cmp = commands.add_parser("compare")
    cmp.add_argument("--baseline", help="a checkout to compare with (default: this tree only)")
    cmp.add_argument("--trials", type=int, default=10000)
    cmp.add_argument("--window", type=int, default=1000)
    cmp.add_argument("--parallel", type=int, default=8)
    cmp.add_argument("--backends", default="sqlite,postgresql")
    cmp.add_argument("--store-trials", type=int, default=100000)
    cmp.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.command == "run":
        print(json.dumps(run_one(args.backend, args.trials, args.parallel, args.window)))
    elif args.command == "fill":
        fill(args.url, args.trials, full_lists=args.lists == "full")
        print("{}")
    elif args.command == "downgrade":
        downgrade(args.url)
        print("{}")
    else:
        compare(args)


if __name__ == "__main__":
    shutil.which("tunery") or sys.exit("the tunery command is not installed")
    main()
