"""Operator at scale: does one reconcile pass cost the same at 10,000 trials as at 1,000?

Issue 17 point 4 ("the operator: reconcile cost at 10,000 trials per experiment flat"). A real
kopf run of 10,000 Jobs takes hours on this machine (each Job is created, played and deleted
through the fake API server), so the history is pre-filled and the passes are driven directly:

1. the fake API server of the Kubernetes tests (``tests/kubernetes/fake_cluster.py``: the
   real ``kubernetes`` client over HTTP, the CRDs of ``deploy/crds`` installed) and a SQLite
   store in a temporary folder;
2. an Experiment (random search, parallelTrialCount P) admitted by
   :meth:`ExperimentOperator.admit`, then N finished trials written in bulk to the store
   (``Store.create_trials``) and their Trial resources, with the status the operator mirrors,
   written straight into the fake server's storage (their Jobs already deleted, as the
   operator leaves them);
3. a few warm-up passes (the first mirrors the whole history once), then S measured passes.
   Before each, the test plays the Job controller and the collector sidecar for every running
   trial (its observations pushed to the store, its Job marked Complete), so each pass
   finishes P trials, suggests and starts P more (Jobs and Trial resources created over
   HTTP) and mirrors the changes: the steady state of a long experiment.

Prints, per N, the median and 90th percentile of the CPU time the operator spends in one
:meth:`ExperimentOperator.reconcile` (the body as kopf would hand it, read before the timer):
this process's CPU time (every thread: the step's job starts run on a pool) less that of the
fake API server's thread, which runs in this process and whose cost is not the operator's
(it scans every object after each write, where a real API server indexes). The wall time of
the pass is printed beside it; it includes the fake server's work. The objects of the fake
server and of the filling are frozen (``gc.freeze``) once filled, so that Python's cyclic
collector does not charge the operator for scanning them; the operator's own (its view of
the 10,000 trials, read on its first pass) are not.

Run: ``python -P bench/operator_scale.py compare [--baseline DIR] [--sizes 1000,10000]
[--steps 20] [--parallel 8]``; ``run N STEPS PARALLEL`` measures one size in this process and
prints a JSON line (``compare`` runs each size in a fresh process, alternating the trees, the
baseline first; the runner imports whatever is first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
V1B1 = "kubeflow.org/v1beta1"
NAMESPACE = "bench"
NAME = "scale"


def experiment_body(max_trials: int, parallel: int) -> dict[str, Any]:
    return {
        "apiVersion": V1B1,
        "kind": "Experiment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": parallel,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": max_trials,
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
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": "busybox:1.36",
                                        "command": ["echo", "loss=${trialParameters.x}"],
                                    }
                                ],
                            }
                        }
                    },
                },
            },
        },
    }


def prefill(store: Any, storage: Any, document: dict[str, Any], owner: Any, count: int) -> None:
    """``count`` finished trials in the store and their mirrored Trial resources."""
    from controller.operator import mirror
    from controller.reconcile import objective_from_spec
    from controller.sidecar import EXPERIMENT_LABEL
    from tunery.store import TrialRecord
    from tunery.trials import TrialCondition

    objective = objective_from_spec(document["spec"])
    rtype = storage.type_of("kubeflow.org", "v1beta1", "trials")
    # the fake server collects garbage (a scan of every object) after each update; nothing is
    # deleted while filling, so that scan is skipped here (it would make filling quadratic)
    collect_garbage, storage.collect_garbage = storage.collect_garbage, lambda: None
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    batch: list[TrialRecord] = []

    def flush() -> None:
        store.create_trials(batch)
        for trial in batch:
            body = mirror.trial_document(trial, document, owner)
            storage.create(rtype, NAMESPACE, body)
            status = mirror.trial_status_document(trial, {}, objective, t0)
            storage.update(
                rtype,
                NAMESPACE,
                trial.name,
                {**storage.get(rtype, NAMESPACE, trial.name), "status": status},
                subresource="status",
                precondition=None,
            )
        batch.clear()

    for i in range(count):
        loss = f"{((i * 7919) % count) / count + 0.5:.6f}"  # never better than a live trial
        batch.append(
            TrialRecord(
                name=f"{NAME}-old-{i:06d}",
                experiment_name=NAME,
                assignment={"x": f"{(i * 0.618) % 1:.6f}"},
                condition=TrialCondition.SUCCEEDED,
                reason="TrialSucceeded",
                message="Trial has succeeded",
                labels={EXPERIMENT_LABEL: NAME},
                created_at=t0,
                start_time=t0,
                completion_time=t0,
                runner_handle={"apiVersion": "batch/v1", "kind": "Job", "deleted": True},
                observation={
                    "metrics": [{"name": "loss", "min": loss, "max": loss, "latest": loss}]
                },
            )
        )
        if len(batch) == 1000:
            flush()
    if batch:
        flush()
    storage.collect_garbage = collect_garbage


def play_running_jobs(api: Any, store: Any) -> int:
    """What the Job controller and the collector sidecars do for every running trial."""
    from tunery.trials import Observation

    now = dt.datetime.now(dt.UTC)
    played = 0
    for job in api.list("batch/v1", "Job", NAMESPACE):
        if (job.get("status") or {}).get("conditions"):
            continue
        name = job["metadata"]["name"]
        value = zlib.crc32(name.encode()) % 1000 / 1000
        store.add_observations(name, [Observation.of("loss", value, 0, now)])
        api.patch(
            "batch/v1",
            "Job",
            NAMESPACE,
            name,
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
            subresource="status",
        )
        played += 1
    return played


def run_one(count: int, steps: int, parallel: int, warmup: int = 3) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent.parent / "tests" / "kubernetes"))
    from fake_cluster import FakeCluster  # type: ignore[import-not-found]

    from controller.clients import suggestion_client
    from controller.operator import ExperimentOperator, OperatorSettings
    from controller.runners.kubernetes import KubeApi, owner_reference
    from tunery.store import open_store

    with FakeCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        api = KubeApi(cluster.api_client(), timeout=60)
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        store = open_store(f"sqlite:///{tmp}/tunery.db")
        body = experiment_body(count + parallel * (warmup + steps + 4), parallel)
        api.create(body)
        operator = ExperimentOperator(
            api,
            store,
            OperatorSettings(collector_image="tunery:bench"),
            suggestion_factory=lambda algorithm: suggestion_client(algorithm, {}),
        )
        operator.admit(api.get(V1B1, "Experiment", NAMESPACE, NAME))
        scoped = store.in_namespace(NAMESPACE)
        document = scoped.get_experiment(NAME).spec
        owner = owner_reference(api.get(V1B1, "Experiment", NAMESPACE, NAME))
        started = time.perf_counter()
        prefill(scoped, cluster.storage, document, owner, count)
        fill_s = time.perf_counter() - started
        # The fake server's objects (and what filling left) live in this process, where an
        # API server's would not: out of the cyclic collector's reach, or every collection
        # during a pass would scan them. What the operator builds from here on is not frozen.
        gc.collect()
        gc.freeze()
        # the fake API server's thread runs in this process: its CPU is not the operator's
        server_clock = time.pthread_getcpuclockid(cluster._thread.ident)
        times: list[float] = []
        cpu: list[float] = []
        finished = 0
        for i in range(warmup + steps):
            played = play_running_jobs(api, scoped)
            current = api.get(V1B1, "Experiment", NAMESPACE, NAME)
            t = time.perf_counter()
            c = time.process_time() - time.clock_gettime(server_clock)
            result = operator.reconcile(current)
            elapsed = time.perf_counter() - t
            used = time.process_time() - time.clock_gettime(server_clock) - c
            if i >= warmup:
                times.append(elapsed)
                cpu.append(used)
                finished += played
            assert result is not None and not result.done, "the experiment ended early"
        total = len(scoped.list_trials(NAME))
        operator.close()
        store.close()
    times.sort()
    cpu.sort()
    return {
        "history": count,
        "trials_at_end": total,
        "steps": steps,
        "finished_per_step": round(finished / steps, 1),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 1),
        "cpu_median_ms": round(statistics.median(cpu) * 1000, 1),
        "cpu_p90_ms": round(cpu[int(0.9 * (len(cpu) - 1))] * 1000, 1),
        "fill_s": round(fill_s, 1),
    }


def sub(pythonpath: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-P", str(HERE), *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args} under {pythonpath} failed: {out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def compare(args: argparse.Namespace) -> None:
    trees = {"this": str(HERE.parent.parent)}
    if args.baseline:
        trees = {"baseline": str(Path(args.baseline).resolve()), **trees}
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# operator_scale — {platform.node()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    results: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in trees}
    for size in sizes:
        for label, path in trees.items():
            run = sub(path, "run", str(size), str(args.steps), str(args.parallel))
            results[label][size] = run
            print(f"  {label} {size}: {json.dumps(run)}", flush=True)
    print(
        "| tree | trials before | operator CPU per pass, median ms | p90 ms | "
        "CPU / first size | wall per pass, median ms | wall / first size |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        first = runs[sizes[0]]
        for size in sizes:
            run = runs[size]
            print(
                f"| {label} | {size:,} | {run['cpu_median_ms']:.1f} | {run['cpu_p90_ms']:.1f} | "
                f"{run['cpu_median_ms'] / first['cpu_median_ms']:.2f} | "
                f"{run['median_ms']:.1f} | {run['median_ms'] / first['median_ms']:.2f} |"
            )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("trials", type=int)
    run.add_argument("steps", type=int)
    run.add_argument("parallel", type=int)
    cmp = commands.add_parser("compare")
    cmp.add_argument("--baseline", help="a checkout to compare with (default: this tree only)")
    cmp.add_argument("--sizes", default="1000,10000")
    cmp.add_argument("--steps", type=int, default=20)
    cmp.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    if args.command == "run":
        print(json.dumps(run_one(args.trials, args.steps, args.parallel)))
    else:
        compare(args)


if __name__ == "__main__":
    main()
