"""The Experiment spec: Katib's ``kubeflow.org/v1beta1`` Experiment, parsed, defaulted, checked.

Kernel package. :func:`load_experiment` (in ``model``) turns YAML text, a file or a mapping
into a frozen :class:`Experiment` or raises :class:`ExperimentError` listing every problem by
field path. The modules, one role each:

- ``model``: the Experiment, its spec nodes, Katib's defaults and cross-field rules, loading
- ``reading``: bytes, text or a file to plain data at a bounded cost (10 MB, strict UTF-8,
  100,000 values with aliases expanded, 100 levels, no duplicate keys), errors located
- ``base``: the base pydantic node and Katib's field conventions (strings, free-form objects)
- ``errors``: :class:`FieldError`, :class:`ExperimentError` and pydantic error translation
- ``collector``: the metrics-collector spec and its defaults per kind
- ``template``: the trial template, trial parameters and job-kind conditions
- ``crd``: the structural OpenAPI schema for the CRD generator (:func:`crd_schema`)

Callers: the CLI and SDK, the controller and the Kubernetes operator, ``tools/gen_crds.py``.
"""

from __future__ import annotations

from tunery.experiment.collector import (
    DEFAULT_METRICS_FILE_PATH,
    DEFAULT_TFEVENT_DIR_PATH,
    CollectorKind,
    FileFormat,
    FileSystemKind,
)
from tunery.experiment.errors import ExperimentError, FieldError, did_you_mean
from tunery.experiment.model import (
    API_VERSION,
    KIND,
    Experiment,
    ResumePolicy,
    crd_schema,
    load_experiment,
)
from tunery.experiment.template import (
    JOB_FAILURE_CONDITION,
    JOB_SUCCESS_CONDITION,
    KUBEFLOW_JOB_SUCCESS_CONDITION,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_METRICS_FILE_PATH",
    "DEFAULT_TFEVENT_DIR_PATH",
    "JOB_FAILURE_CONDITION",
    "JOB_SUCCESS_CONDITION",
    "KIND",
    "KUBEFLOW_JOB_SUCCESS_CONDITION",
    "CollectorKind",
    "Experiment",
    "ExperimentError",
    "FieldError",
    "FileFormat",
    "FileSystemKind",
    "ResumePolicy",
    "crd_schema",
    "did_you_mean",
    "load_experiment",
]
