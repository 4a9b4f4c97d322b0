"""PrometheusScraper (selectors, new values only, timestamps, unreachable endpoints) and the
Poller that drives it, against prometheus_client's real HTTP server."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from metrics_collector.errors import MetricsFormatError
from metrics_collector.polling import Poller
from metrics_collector.prometheus import PrometheusScraper, Selector, endpoint_url

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_selectors_parse_names_and_labels() -> None:
    assert Selector.parse("accuracy") == Selector("accuracy", "accuracy", {})
    sel = Selector.parse('loss{split="test", kind="a\\"b"}')
    assert sel.sample_name == "loss" and sel.labels == {"split": "test", "kind": 'a"b'}
    assert sel.picks("loss", {"split": "test", "kind": 'a"b', "extra": "x"})
    assert not sel.picks("loss", {"split": "train", "kind": 'a"b'})
    for bad in ("train/loss", "loss{split}", "1st", 'loss{split="x"'):
        with pytest.raises(MetricsFormatError, match="metric name"):
            Selector.parse(bad)


def test_only_new_values_are_observed_with_ordinal_steps() -> None:
    scraper = PrometheusScraper("http://unused", ["accuracy", "steps_total"])
    text = "# TYPE accuracy gauge\naccuracy 0.5\n# TYPE steps counter\nsteps_total 3\n"
    first = scraper.observe(text, NOW)
    assert [(o.metric_name, o.step, o.numeric, o.time) for o in first] == [
        ("accuracy", 0, 0.5, NOW),
        ("steps_total", 0, 3.0, NOW),
    ]
    assert scraper.observe(text, NOW) == []  # scraped again, unchanged
    changed = scraper.observe("accuracy 0.75\nsteps_total 3\n", NOW)
    assert [(o.metric_name, o.step, o.numeric) for o in changed] == [("accuracy", 1, 0.75)]
    assert scraper.observe("accuracy NaN\n", NOW) == []


def test_sample_timestamps_are_kept() -> None:
    scraper = PrometheusScraper("http://unused", ["accuracy"])
    (obs,) = scraper.observe("accuracy 0.5 1700000000500\n", NOW)
    assert obs.time == dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.UTC)


def test_ambiguous_series_are_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    scraper = PrometheusScraper("http://h/metrics", ["loss", 'loss{split="test"}'])
    text = 'loss{split="train"} 2\nloss{split="test"} 1\n'
    with caplog.at_level(logging.WARNING):
        got = scraper.observe(text, NOW) + scraper.observe(text, NOW)
    assert [(o.metric_name, o.numeric) for o in got] == [('loss{split="test"}', 1.0)]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "metric loss matches 2 series" in warnings[0]
    assert 'loss{split="test"}' in warnings[0] and 'loss{split="train"}' in warnings[0]


def test_garbage_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    scraper = PrometheusScraper("http://h/metrics", ["accuracy"])
    assert scraper.observe("<html>not metrics</html>\n", NOW) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_poller_scrapes_a_live_endpoint_until_stopped() -> None:
    port = _free_port()
    registry = CollectorRegistry()
    gauge = Gauge("accuracy", "accuracy", registry=registry)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        scraper = PrometheusScraper(endpoint_url(port, "/metrics"), ["accuracy"])
        seen: list[float | None] = []
        got = threading.Event()

        def sink(observations: list) -> None:
            seen.extend(o.numeric for o in observations)
            got.set()

        poller = Poller(scraper.poll, sink, interval=0.05).start()
        for value in (0.1, 0.2, 0.3):
            gauge.set(value)
            deadline = time.monotonic() + 5  # until a scrape saw it (not an earlier value)
            while not (seen and seen[-1] == value) and time.monotonic() < deadline:
                got.wait(0.05)
                got.clear()
            assert seen and seen[-1] == value
        poller.stop()
        assert poller.join(5)
        assert seen == [0.0, 0.1, 0.2, 0.3] or seen == [0.1, 0.2, 0.3]
        assert scraper.scrapes >= 3
    finally:
        server.shutdown()
        thread.join(5)


def test_an_endpoint_that_is_not_there_is_not_an_error() -> None:
    scraper = PrometheusScraper(endpoint_url(_free_port(), "/metrics"), ["accuracy"])
    start = time.monotonic()
    assert scraper.poll() == []
    assert scraper.failures == 1 and time.monotonic() - start < 2


def test_poller_stops_when_done_after_a_last_poll() -> None:
    calls: list[int] = []
    done = threading.Event()

    def poll() -> list:
        calls.append(1)
        if len(calls) == 3:
            done.set()
        return []

    poller = Poller(poll, lambda _: None, is_done=done.is_set, interval=0.01)
    poller.run()
    assert len(calls) == 4  # the one that saw "done" polls once more
