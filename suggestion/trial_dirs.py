"""Katib-compatible checkpoint folders for pbt, prepared by the Suggestion service itself.

Called by :class:`suggestion.service.SuggestionService` when it was given a root (``tunery
serve suggestion --katib-data-dir /opt/katib/data``): for a Katib controller driving this
server, as Katib's own pbt service does on the suggestion volume it mounts. Katib's pod
webhook mounts ``<root>/<experiment>/<trial>`` of that volume into each trial at
``suggestion_trial_dir``; before the trial exists, this module creates that folder for every
suggestion of an experiment with a ``suggestion_trial_dir`` setting, as a copy of its parent's
folder (label ``pbt.suggestion.katib.kubeflow.org/parent``) or empty.

tunery's own controller does not need this (it prepares the folders itself, see
``controller.checkpoints``). Experiment and trial names must be Kubernetes object names, so
no name from a request can reach outside the root.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from suggestion.algorithms.base import InvalidRequestError, SuggestedTrial
from suggestion.algorithms.pbt import PARENT_LABEL

SETTING = "suggestion_trial_dir"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _checked(name: str, what: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidRequestError(
            f"{what} {name!r} is not a Kubernetes object name: no checkpoint folder is made for it"
        )
    return name


def prepare(
    root: Path, experiment: str, settings: Mapping[str, str], trials: Sequence[SuggestedTrial]
) -> None:
    """Create ``root/<experiment>/<trial>`` for each suggested trial (a copy of the parent's
    folder when it has one), when ``settings`` has a non-empty ``suggestion_trial_dir``.

    Raises:
        InvalidRequestError: an experiment, trial or parent name that is not an object name.
        OSError: the folders cannot be written.
    """
    if not settings.get(SETTING):
        return
    base = root / _checked(experiment, "experiment")
    for trial in trials:
        if not trial.name:
            continue
        folder = base / _checked(trial.name, "trial")
        parent_name = trial.labels.get(PARENT_LABEL)
        parent = base / _checked(parent_name, "parent trial") if parent_name else None
        if folder.exists():
            shutil.rmtree(folder)
        if parent is not None and parent.is_dir():
            shutil.copytree(parent, folder, symlinks=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
