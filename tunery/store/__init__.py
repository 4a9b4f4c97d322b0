"""Persistence: experiments, trials and observation logs behind the :class:`Store` API."""

from tunery.store.base import Condition, ExperimentRecord, Store, TrialRecord
from tunery.store.errors import (
    AlreadyExistsError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)

__all__ = [
    "AlreadyExistsError",
    "Condition",
    "ExperimentRecord",
    "NotFoundError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TrialRecord",
]
