"""``kubectl`` against the fake API server: the README's ``kubectl apply -f experiment.yaml``.

kubectl reads discovery and the OpenAPI v3 documents (:mod:`fake_openapi`) before it writes:
``apply`` creates the Experiment (validated by the server against its CRD), applies a change as
a merge patch, ``get experiments`` prints the CRD's printer columns from the server's Table,
``delete`` removes it, and an invalid Experiment is refused naming the field. Skipped where
``kubectl`` is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fake_cluster import FakeCluster, kubeconfig

from controller.runners.kubernetes import KubeApi

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture()
def kubectl(cluster: FakeCluster, namespace: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig(cluster.url)))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(config), "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},  # no user's cache or config
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_apply_get_and_delete_an_experiment(
    kubectl, api: KubeApi, namespace: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    example = ROOT / "examples/quickstart/experiment.yaml"
    created = kubectl("apply", "-f", str(example))
    assert created.stdout.strip() == "experiment.kubeflow.org/quickstart created"
    stored = api.get("kubeflow.org/v1beta1", "Experiment", namespace, "quickstart")
    assert stored["spec"]["maxTrialCount"] == 12
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]

    document = yaml.safe_load(example.read_text())
    document["spec"]["maxTrialCount"] = 20
    changed = tmp_path / "experiment.yaml"
    changed.write_text(yaml.safe_dump(document))
    assert "configured" in kubectl("apply", "-f", str(changed)).stdout
    assert (
        api.get("kubeflow.org/v1beta1", "Experiment", namespace, "quickstart")["spec"][
            "maxTrialCount"
        ]
        == 20
    )

    api.patch(
        "kubeflow.org/v1beta1", "Experiment", namespace, "quickstart",
        {"status": {
            "conditions": [{"type": "Created", "status": "True", "reason": "ExperimentCreated"},
                           {"type": "Running", "status": "True", "reason": "ExperimentRunning"}],
            "trials": 4, "trialsRunning": 3,
            "currentOptimalTrial": {"bestTrialName": "quickstart-abc"},
        }},
        subresource="status",
    )  # fmt: skip
    table = kubectl("get", "experiments").stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "STATUS", "AGE", "BEST", "TRIALS", "RUNNING"]
    row = table[1].split()
    assert row[:3] == ["quickstart", "Running", "True"] and row[-2:] == ["4", "3"]
    wide = kubectl("get", "experiment", "quickstart", "-o", "wide").stdout
    assert "BEST-TRIAL" in wide and "quickstart-abc" in wide

    deleted = kubectl("delete", "-f", str(changed))
    assert deleted.stdout.strip() == 'experiment.kubeflow.org "quickstart" deleted'
    assert "No resources found" in kubectl("get", "experiments").stderr


def test_an_invalid_experiment_is_refused_naming_the_field(kubectl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    document = yaml.safe_load((ROOT / "examples/quickstart/experiment.yaml").read_text())
    document["spec"]["parallelTrialCount"] = "three"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    refused = kubectl("apply", "-f", str(path), check=False)
    assert refused.returncode != 0
    assert "spec.parallelTrialCount" in refused.stderr, refused.stderr
    assert "No resources found" in kubectl("get", "experiments").stderr
