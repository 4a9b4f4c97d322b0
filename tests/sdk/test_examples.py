"""The SDK's examples and a script's own ``__main__`` objective run end to end (in a
subprocess, as a user runs them), with small budgets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunery.pythonpath import child_pythonpath

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "sdk"


def _run(
    args: list[str], cwd: Path, timeout: float = 240, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "KATIB_"))}
    env.update(extra_env)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    pythonpath = child_pythonpath(env)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


SCRIPT = """
from tunery import search, tune

OFFSET = 10.0  # a global of __main__: pickled with the function, by value


def objective(params):
    return (params["x"] - 2) ** 2 + OFFSET


if __name__ == "__main__":
    result = tune(objective, {"x": search.discrete([1, 2, 3])}, name="main-script",
                  objective_type="minimize", algorithm_name="grid", max_trial_count=3,
                  verbose=False)
    print("best", result.best_parameters, result.best_value)
"""


@pytest.mark.slow
def test_an_objective_defined_in_a_scripts_main(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    done = _run(["script.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "best {'x': 2} 10.0"


@pytest.mark.slow
def test_the_scikit_learn_example(tmp_path: Path) -> None:
    done = _run([str(EXAMPLES / "sklearn_svc.py"), "--trials", "3"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "best accuracy 0." in done.stdout
    assert "3 trials" in done.stdout


@pytest.mark.slow
def test_the_torch_example_runs_on_the_cpu_without_a_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    torch_digits = str(EXAMPLES / "torch_digits.py")
    done = _run([torch_digits, "--trials", "3", "--epochs", "4"], tmp_path, TUNERY_GPUS="")
    assert done.returncode == 0, done.stderr
    assert "no GPU found: the trials run on the CPU" in done.stderr
    assert "best accuracy 0." in done.stdout
    assert "3 trials" in done.stdout
    logs = list((tmp_path / ".tunery" / "logs").rglob("*.log"))
    assert logs and all("training on cpu" in p.read_text() for p in logs)
    refused = _run([torch_digits, "--device", "gpu"], tmp_path, TUNERY_GPUS="")
    assert refused.returncode == 1 and "--device gpu: no GPU found" in refused.stderr


@pytest.mark.slow
def test_the_torch_example_gives_each_trial_a_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = _run(
        [str(EXAMPLES / "torch_digits.py"), "--trials", "2", "--epochs", "2"],
        tmp_path,
        TUNERY_GPUS="0,1",  # a fake inventory: each trial gets CUDA_VISIBLE_DEVICES 0 or 1
    )
    assert done.returncode == 0, done.stderr
    assert "2 GPU(s) found: each trial gets one" in done.stderr
    assert "2 trials" in done.stdout
