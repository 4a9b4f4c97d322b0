"""Where a local trial's files live, derived from its log path (shared by reconciler and
collector wiring, so both agree without storing more state)."""

from __future__ import annotations

from pathlib import Path


def trial_log_path(logs_dir: Path, experiment: str, trial: str) -> Path:
    """The trial's stdout+stderr log (also the collector's write-ahead log)."""
    return logs_dir / experiment / f"{trial}.log"


def push_metrics_path(log_path: Path) -> Path:
    """Where ``report_metrics`` appends JSON lines for this trial (``TUNERY_METRICS_FILE``)."""
    return log_path.with_suffix(".push.jsonl")


def local_metrics_path(log_path: Path) -> Path:
    """The trial's private copy of a File collector's ``fileSystemPath.path``
    (``TUNERY_METRICS_PATH``)."""
    return log_path.with_suffix(".metrics")


def local_tfevent_dir(log_path: Path) -> Path:
    """The trial's own folder for a TensorFlowEvent collector's event files
    (:mod:`controller.local_collectors`)."""
    return log_path.with_suffix(".tfevents")


def checkpoint_root(log_path: Path) -> Path:
    """The folder holding the experiment's trial checkpoint folders, ``<trial>/`` each
    (:mod:`controller.checkpoints`); beside the trial logs."""
    return log_path.parent / "checkpoints"
