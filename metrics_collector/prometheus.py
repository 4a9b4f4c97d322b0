"""PrometheusMetric source: scrape a trial's metrics endpoint while it runs.

Called by the local controller's collector wiring (:mod:`controller.collecting`) and by the
Kubernetes sidecar (:mod:`metrics_collector.sidecar`); both poll :meth:`PrometheusScraper.poll`
through :class:`metrics_collector.polling.Poller` (every second) and hand what it returns to a
:class:`~metrics_collector.collector.TrialCollector`.

The endpoint is ``http://127.0.0.1:<port><path>`` (``source.httpGet``; the sidecar shares the
trial pod's network). The text exposition format is parsed with ``prometheus_client``'s
parser. Which samples become which metric:

- a metric name ``accuracy`` takes the sample named ``accuracy`` (a gauge; ``steps_total`` for
  a counter); when several series carry that name (different labels), name one:
- a metric name with a label selector, ``accuracy{split="test"}``, takes the one sample of
  that name whose labels include those given. A name that matches several series is skipped
  with one warning naming them.

A value is recorded when it is new: the first scrape that shows it, and every scrape where it
changed (a gauge set once per epoch gives one observation per epoch, however often it is
scraped). The step is the ordinal of the metric's recorded values; the time the sample's
timestamp when the endpoint gives one, else the scrape's. NaN is skipped. An endpoint that
does not answer yet (the trial is starting) or any more (it is ending) is not an error.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from metrics_collector.errors import MetricsFormatError
from tunery.trials import Observation

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0
MAX_BODY_BYTES = 16 << 20
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Selector:
    """A metric name as the experiment gives it: sample name plus required labels."""

    metric_name: str
    sample_name: str
    labels: Mapping[str, str]

    @classmethod
    def parse(cls, metric_name: str) -> Selector:
        """``accuracy`` or ``accuracy{split="test"}``.

        Raises:
            MetricsFormatError: not a Prometheus sample name with an optional label selector.
        """
        m = _NAME.fullmatch(metric_name.strip())
        if m is None:
            raise MetricsFormatError(
                f"metric name {metric_name!r} is not a Prometheus sample name (letters, digits, "
                '_ and :, optionally followed by labels such as {split="test"})'
            )
        labels: dict[str, str] = {}
        body = (m.group(2) or "").strip()
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if lm is None or lm.end() == pos:
                raise MetricsFormatError(
                    f"metric name {metric_name!r}: cannot read the labels at {body[pos:]!r} "
                    '(expected name="value" pairs separated by commas)'
                )
            labels[lm.group(1)] = bytes(lm.group(2), "utf-8").decode("unicode_escape")
            pos = lm.end()
        return cls(metric_name, m.group(1), labels)

    def picks(self, name: str, labels: Mapping[str, str]) -> bool:
        return name == self.sample_name and all(labels.get(k) == v for k, v in self.labels.items())


def endpoint_url(port: int | str, path: str, host: str = "127.0.0.1") -> str:
    """``http://<host>:<port><path>``, the address the collector scrapes."""
    return f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"


class PrometheusScraper:
    """Scrapes ``url`` and returns the new values of ``metric_names`` on each :meth:`poll`.

    Not thread-safe: one poller at a time.

    Raises:
        MetricsFormatError: a metric name is not a sample name with an optional selector.
    """

    def __init__(
        self, url: str, metric_names: Sequence[str], *, timeout: float = SCRAPE_TIMEOUT
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.selectors = tuple(Selector.parse(n) for n in dict.fromkeys(metric_names))
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._warned: set[str] = set()
        self.scrapes = 0
        self.failures = 0

    def fetch(self) -> str | None:
        """The endpoint's text, or None when it does not answer (logged at debug level)."""
        request = urllib.request.Request(self.url, headers={"Accept": ACCEPT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read(MAX_BODY_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.failures += 1
            log.debug("scrape of %s failed: %s", self.url, e)
            return None
        if len(body) > MAX_BODY_BYTES:
            log.warning("%s answered more than %d bytes; ignored", self.url, MAX_BODY_BYTES)
            return None
        self.scrapes += 1
        return body.decode("utf-8", "replace")

    def poll(self) -> list[Observation]:
        """Scrape once; the values that are new since the last scrape."""
        text = self.fetch()
        return [] if text is None else self.observe(text, dt.datetime.now(dt.UTC))

    def observe(self, text: str, now: dt.datetime) -> list[Observation]:
        """The new values in one exposition ``text`` scraped at ``now``."""
        from prometheus_client.parser import text_string_to_metric_families

        found: dict[str, list[tuple[str, Mapping[str, str], float, float | None]]] = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    for sel in self.selectors:
                        if sel.picks(sample.name, sample.labels):
                            stamp = sample.timestamp
                            found.setdefault(sel.metric_name, []).append(
                                (
                                    sample.name,
                                    sample.labels,
                                    float(sample.value),
                                    None if stamp is None else float(stamp),
                                )
                            )
        except ValueError as e:
            log.warning("%s: not the Prometheus text format (%s); scrape ignored", self.url, e)
            return []
        out = []
        for sel in self.selectors:
            samples = found.get(sel.metric_name, [])
            if len(samples) > 1:
                if sel.metric_name not in self._warned:
                    self._warned.add(sel.metric_name)
                    series = ", ".join(_series(n, lb) for n, lb, _, _ in samples[:5])
                    log.warning(
                        "metric %s matches %d series at %s (%s); name one with its labels, "
                        "e.g. %s",
                        sel.metric_name,
                        len(samples),
                        self.url,
                        series,
                        _series(samples[0][0], samples[0][1]),
                    )
                continue
            if not samples:
                continue
            _, _, value, stamp = samples[0]
            if math.isnan(value) or self._last.get(sel.metric_name) == value:
                continue
            self._last[sel.metric_name] = value
            step = self._count.get(sel.metric_name, 0)
            self._count[sel.metric_name] = step + 1
            time = now if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC)
            out.append(Observation.of(sel.metric_name, value, step, time))
        return out


def _series(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name
