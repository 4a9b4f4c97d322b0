"""Poller: call a source's ``poll()`` on a thread and hand its observations to a collector.

Used for the sources that yield observations rather than bytes: TensorBoard event files
(:class:`metrics_collector.tfevents.TFEventReader`) and a Prometheus endpoint
(:class:`metrics_collector.prometheus.PrometheusScraper`). Called by the local controller's
collector wiring and by the Kubernetes sidecar, with ``sink=collector.add``. It has the
``start``/``stop``/``join``/``run`` shape of :class:`metrics_collector.sources.FileTailer`, so
both kinds of source are driven alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tunery.trials import Observation

log = logging.getLogger(__name__)

Poll = Callable[[], list[Observation]]
ObservationSink = Callable[[list[Observation]], object]


class Poller:
    """Polls every ``interval`` seconds until stopped or until ``is_done()``; then polls once
    more (with ``drain``), so what was written last is read."""

    def __init__(
        self,
        poll: Poll,
        sink: ObservationSink,
        *,
        is_done: Callable[[], bool] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.poll = poll
        self.sink = sink
        self.is_done = is_done
        self.interval = interval
        self.polls = 0
        self._stop = threading.Event()
        self._drain = True
        self._thread: threading.Thread | None = None

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self.run, name="metrics-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, drain: bool = True) -> None:
        """Stop polling; with ``drain``, poll one last time first."""
        self._drain = drain
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

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
