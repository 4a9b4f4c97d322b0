"""Fixtures of the dashboard tests: a store filled by a real ``tunery run``, the app over it.

``finished_run`` runs examples/early-stopping (random search + medianstop, 10 trials, some
early-stopped) once per session in a scratch folder; tests that change the store work on a
copy (``run_copy``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed")

from fastapi.testclient import TestClient

from tunery.dashboard import DashboardSettings, create_app
from tunery.store import Store, open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "early-stopping"
NAME = "median-stop"
LOCAL = "http://127.0.0.1"


@dataclass(frozen=True)
class Run:
    folder: Path
    db_url: str

    @property
    def workdir(self) -> Path:
        return self.folder / ".tunery"


def tunery_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("TUNERY_DB_URL", None)
    return env


def run_experiment(folder: Path, yaml_name: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
    """``tunery run`` of ``folder/yaml_name`` into ``folder/tunery.db``, in ``folder``."""
    command = [sys.executable, "-m", "tunery.cli", "run", yaml_name, "--db"]
    command += [f"sqlite:///{folder / 'tunery.db'}", "-o", "json"]
    proc = subprocess.Popen(
        command,
        cwd=folder,
        env=tunery_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if wait:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    return proc


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("dashboard-run")
    for path in EXAMPLE.iterdir():
        shutil.copy(path, folder / path.name)
    run_experiment(folder, "median-stop.yaml")
    return Run(folder, f"sqlite:///{folder / 'tunery.db'}")


@pytest.fixture
def run_copy(finished_run: Run, tmp_path: Path) -> Run:
    """The finished run's folder copied, for tests that change the store."""
    folder = tmp_path / "run"
    shutil.copytree(finished_run.folder, folder, symlinks=True)
    return Run(folder, f"sqlite:///{folder / 'tunery.db'}")


@pytest.fixture
def run_store(finished_run: Run) -> Iterator[Store]:
    store = open_store(finished_run.db_url)
    yield store
    store.close()


def make_client(store: Store, run: Run, **settings: object) -> TestClient:
    options = {"workdir": run.workdir, "warm_up": False, "db_url": run.db_url, **settings}
    return TestClient(create_app(store, DashboardSettings(**options)), base_url=LOCAL)  # type: ignore[arg-type]


@pytest.fixture
def client(run_store: Store, finished_run: Run) -> TestClient:
    return make_client(run_store, finished_run)
