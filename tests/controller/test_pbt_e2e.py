"""``tunery run`` of the pbt examples: generations hand their checkpoints on.

The trial (examples/simple-pbt/pbt_test.py) saves its step count in its checkpoint folder; a
trial that continues its parent's checkpoint starts at the parent's last step. So a trial of
generation 2 that ends at step 61 read the step-41 checkpoint written by its generation-1
parent, which itself continued a generation-0 member. The PyTorch example (skipped without
torch) shows what exploit and explore hand on.
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import pytest
import yaml

from suggestion.algorithms.pbt import BASE_LABEL, GENERATION_LABEL, PARENT_LABEL
from tunery.store import open_store
from tunery.trials import TrialCondition

from .test_examples_e2e import EXAMPLES, run_cli, summary

pytestmark = pytest.mark.slow


def step_of(folder: Path) -> int:
    with (folder / "training.ckpt").open("rb") as f:
        return int(pickle.load(f)["step"])


def test_simple_pbt_hands_checkpoints_between_generations(tmp_path: Path) -> None:
    code, output = run_cli(
        tmp_path, "run", str(EXAMPLES / "simple-pbt/experiment.yaml"), "-o", "json"
    )
    assert code == 0, output
    result = summary(output)
    assert result["succeeded"] == result["trials"] == 20
    trials = {
        t.name: t for t in open_store(f"sqlite:///{tmp_path}/t.db").list_trials("simple-pbt")
    }
    assert all(t.condition is TrialCondition.SUCCEEDED for t in trials.values())
    generation = {name: int(t.labels[GENERATION_LABEL]) for name, t in trials.items()}
    assert max(generation.values()) >= 2
    root = tmp_path / "logs" / "simple-pbt" / "checkpoints"
    for name, t in trials.items():
        g = generation[name]
        assert step_of(root / name) == 1 + 20 * (g + 1), name  # 20 epochs per generation
        if g == 0:
            assert PARENT_LABEL not in t.labels
            continue
        parent = t.labels[PARENT_LABEL]
        assert generation[parent] == g - 1
        log = (tmp_path / "logs" / "simple-pbt" / f"{name}.log").read_text()
        assert f"resumed from step {1 + 20 * g}" in log  # it read its parent's checkpoint
    second = [n for n, g in generation.items() if g == 2]
    assert second and all(generation[trials[n].labels[PARENT_LABEL]] == 1 for n in second)


def test_pytorch_pbt_exploits_better_weights_and_explores_nearby_values(tmp_path: Path) -> None:
    """The pbt-pytorch example, one population of 5 and its next generation: each child
    starts from exactly the weights its parent ended with (the accuracy it resumes at is the
    parent's last one); an exploiting child took a better member's weights and values, an
    exploring child its own with lr and momentum scaled by 0.8 or 1.2."""
    pytest.importorskip("torch", reason="the pbt-pytorch example needs torch (tunery[torch])")
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES / "pbt-pytorch", folder)
    document = yaml.safe_load((folder / "experiment.yaml").read_text())
    spec = document["spec"]
    spec["maxTrialCount"] = 11
    for setting in spec["algorithm"]["algorithmSettings"]:
        if setting["name"] == "n_population":
            setting["value"] = "5"
        if setting["name"] == "truncation_threshold":
            setting["value"] = "0.2"
    (folder / "experiment.yaml").write_text(yaml.safe_dump(document))
    code, output = run_cli(tmp_path, "run", str(folder / "experiment.yaml"), "-o", "json")
    assert code == 0, output
    trials = {
        t.name: t for t in open_store(f"sqlite:///{tmp_path}/t.db").list_trials("pbt-pytorch")
    }
    assert all(t.condition is TrialCondition.SUCCEEDED for t in trials.values())

    def final(name: str) -> float:
        metrics = trials[name].observation["metrics"]
        return float(next(m for m in metrics if m["name"] == "accuracy")["latest"])

    def resumed(name: str) -> str:
        log = (tmp_path / "logs" / "pbt-pytorch" / f"{name}.log").read_text()
        return re.findall(r"resumed epoch=(\d+) accuracy=([\d.]+)", log)

    children = [t for t in trials.values() if t.labels[GENERATION_LABEL] == "1"]
    assert len(children) >= 3
    kinds = set()
    for child in children:
        parent = trials[child.labels[PARENT_LABEL]]
        base = trials[child.labels[BASE_LABEL]]
        assert resumed(child.name) == [("2", f"{final(parent.name):.5f}")]  # its weights
        if parent.name != base.name:  # exploit: the better member's weights and values
            kinds.add("exploit")
            assert final(parent.name) > final(base.name)
            assert child.assignment == parent.assignment
        else:  # explore: its own weights, values moved by Katib's factors
            kinds.add("explore")
            for key in ("lr", "momentum"):
                old, new = float(parent.assignment[key]), float(child.assignment[key])
                assert new != old and min(abs(new / old - f) for f in (0.8, 1.2)) < 1e-3
    assert kinds == {"exploit", "explore"}
