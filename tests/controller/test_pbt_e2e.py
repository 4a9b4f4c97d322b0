"""``tunery run`` of the simple-pbt example: generations hand their checkpoints on.

The trial (examples/simple-pbt/pbt_test.py) saves its step count in its checkpoint folder; a
trial that continues its parent's checkpoint starts at the parent's last step. So a trial of
generation 2 that ends at step 61 read the step-41 checkpoint written by its generation-1
parent, which itself continued a generation-0 member.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from suggestion.algorithms.pbt import GENERATION_LABEL, PARENT_LABEL
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
