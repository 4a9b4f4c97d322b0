"""Shared helpers of the SDK tests: render a trial's container as the controller does and run it
as a process, the way the local runner (or a cluster pod) would."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.templating import TrialMeta, render_trial_job
from tunery.sdk.document import build_document

RENDER_TIMEOUT = 60


def render_container(
    spec: Any, container: Mapping[str, Any], assignment: Mapping[str, str]
) -> dict[str, Any]:
    """The primary container of the trial job for ``assignment`` (wire strings)."""
    document = build_document(spec, container)
    template = document["spec"]["trialTemplate"]
    job = render_trial_job(
        template["trialSpec"], template["trialParameters"], assignment, TrialMeta(name="t-1")
    )
    return job["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def run_container(
    container: Mapping[str, Any],
    cwd: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    replace_python: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a rendered container's command and args (argv, no shell) with its env."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if replace_python is not None:
        argv[0] = replace_python
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "KATIB_"))}
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    env.update(extra_env or {})
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=RENDER_TIMEOUT
    )


@pytest.fixture
def render() -> Any:
    """:func:`render_container`, as a fixture."""
    return render_container


@pytest.fixture
def run() -> Any:
    """:func:`run_container`, as a fixture."""
    return run_container


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty folder, with no tunery/Katib variables inherited."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("TUNERY_", "KATIB_")):
            monkeypatch.delenv(key)
    return tmp_path
