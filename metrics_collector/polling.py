"""Poller: call a source's ``poll()`` on a thread and hand its observations to a collector.

Used for the sources that yield observations rather than bytes: TensorBoard event files
(:class:`metrics_collector.tfevents.TFEventReader`) and a Prometheus endpoint
(:class:`metrics_collector.prometheus.PrometheusScraper`). Called by the local controller's
collector wiring and by the Kubernetes sidecar, with ``sink=collector.add``. Like
:class:`metrics_collector.sources.FileTailer` it is a
:class:`~metrics_collector.background.BackgroundLoop`, so both kinds of source are driven
alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from metrics_collector.background import BackgroundLoop
from tunery.trials import Observation

log = logging.getLogger(__name__)

Poll = Callable[[], list[Observation]]
ObservationSink = Callable[[list[Observation]], object]


class Poller(BackgroundLoop):
    """Polls every ``interval`` seconds until stopped or until ``is_done()``; then polls once
    more (with ``drain``), so what was written last is read."""

    thread_name = "metrics-poller"

    def __init__(
        self,
        poll: Poll,
        sink: ObservationSink,
        *,
        is_done: Callable[[], bool] | None = None,
        interval: float = 1.0,
    ) -> None:
        super().__init__()
        self.poll = poll
        self.sink = sink
        self.is_done = is_done
        self.interval = interval
        self.polls = 0

    def run(self) -> None:
        while True:
            done = self._stop.is_set() or (self.is_done is not None and self.is_done())
            if done and not self._drain:
                return
            self._once()
            if done:
                return
            self._stop.wait(self.interval)

    def _once(self) -> None:
        self.polls += 1
        try:
            observations = self.poll()
        except Exception:
            log.exception("metrics poll failed; polling on")
            return
        if observations:
            try:
                self.sink(observations)
            except Exception:
                log.exception("collector refused %d observation(s)", len(observations))
