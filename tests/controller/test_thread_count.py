"""Launch and collection without per-trial threads (issue 17, deliverable 2): while eight trials
run at once, the local controller holds a fixed handful of threads (one reaper, one collection
loop), and every trial's metrics still arrive."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from controller.local import LocalSettings, run_until_done, submit
from tunery.experiment import load_experiment
from tunery.store import open_store

PARALLEL = 8
POOLS = ("trial-finish", "trial-start", "sampler")


def _document() -> dict:
    doc = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "threads"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": PARALLEL,
            "maxTrialCount": 2 * PARALLEL,
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
                                        "command": [
                                            "sh",
                                            "-c",
                                            "echo loss=${trialParameters.x}; sleep 0.6",
                                        ],
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


def test_threads_do_not_grow_with_running_trials(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    name, _ = submit(store, _document(), tmp_path)
    before = threading.active_count()
    peak = [0]
    peak_names: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            names = [t.name for t in threading.enumerate()]
            counted = [
                n for n in names if not n.startswith(("trial-finish", "trial-start", "sampler"))
            ]
            if len(counted) > peak[0]:
                peak[0] = len(counted)
                peak_names[:] = counted
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, name="sampler", daemon=True)
    sampler.start()
    try:
        run_until_done(store, name, LocalSettings(logs_dir=tmp_path / "logs"))
    finally:
        done.set()
        sampler.join()
    trials = store.list_trials(name)
    assert [t.condition.value for t in trials] == ["Succeeded"] * (2 * PARALLEL)
    # this thread + the reaper + the collection loop (+ store helpers); before, each running
    # trial added five (two file tailers, two collector flushers, one exit waiter). The
    # reconciler's bounded pools that start and finish a wave (kept for the experiment) are
    # not counted.
    assert peak[0] <= before + 4, peak_names
    store.close()
