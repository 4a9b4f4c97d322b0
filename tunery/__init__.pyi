# Types of the lazily exported SDK names (tunery/__init__.py imports them on first use).
from tunery import search as search
from tunery.sdk import Client as Client
from tunery.sdk import TuneResult as TuneResult
from tunery.sdk import report_metrics as report_metrics
from tunery.sdk import tune as tune

__version__: str
__all__ = ["Client", "TuneResult", "__version__", "report_metrics", "search", "tune"]
