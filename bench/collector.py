"""Collector benchmarks (shared/benchmarks.md §4): parse throughput and print→store latency.

Throughput: a generated, realistic training log (a metric line every 10 lines; the others are
progress and logging lines, some mentioning "Loss" or "=") is parsed on one core by the
streaming parser, fed 1 MiB chunks as a tailer does:

- TEXT with Katib's default filter (``epoch=3 step=1200 loss=0.23 accuracy=0.91``, timestamped),
- TEXT with a custom filter (Katib's file-collector example,
  ``{metricName: loss, metricValue: 0.23}``),
- JSON lines (``{"timestamp": ..., "step": ..., "loss": ..., "accuracy": ...}`` among other
  JSON events),
- and, end to end, the default-filter log through a ``TrialCollector`` into SQLite (wall time
  until every row is committed).

Lines per second are the median of ``--repeat`` runs, by wall clock and by process CPU time
(the machines here are shared; CPU time is the steadier figure).

Latency: a child process prints ``latency_probe=<its time.time()>`` every 100 ms amid noise;
the collector reads it (from the pipe, as ``PipeReader``; or tailing the log file the process
writes, as the local runner does) into SQLite with the default flush settings, and a second
connection polls every 2 ms for the row. Latency = when the row became visible minus when it was
printed. Bars: ≥ 1,000,000 lines/s (default filter); print→store ≤ 1 s.

Usage::

    python -m bench.collector                  # 1,000,000 lines, 5 repeats, 30 probes
    python -m bench.collector --lines 200000 --repeat 3 --probes 10
    python -m bench.collector --markdown       # the table as Markdown (docs/benchmarks.md)
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from metrics_collector.collector import TrialCollector  # noqa: E402
from metrics_collector.parsers import JsonLinesParser, Parser, TextParser  # noqa: E402
from metrics_collector.sources import FileTailer, PipeReader  # noqa: E402
from tunery.trials import Objective, ObjectiveType  # noqa: E402

CHUNK = 1 << 20
KATIB_FILE_FILTER = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"
METRICS = ["loss", "accuracy"]
THROUGHPUT_BAR = 1_000_000
DEFAULT_ROW = "TEXT, Katib's default filter"
LATENCY_BAR = 1.0


# -- generated logs --------------------------------------------------------------------------
def _noise(rng: random.Random, i: int) -> str:
    kind = i % 9
    if kind in (0, 3, 6):
        return (
            f"Train Epoch: {i // 10000} [{(i * 32) % 60000}/60000 ({rng.random() * 100:.0f}%)]"
            f"\tLoss: {rng.random():.6f}"
        )
    if kind in (1, 4):
        return f"[INFO] dataloader worker {i % 8} prefetched batch {i} in {rng.random():.3f}s"
    if kind == 2:
        return (
            f"lr={rng.random() / 100:.6f} grad_norm={rng.random() * 5:.4f} "
            f"tokens/s={rng.randint(1000, 9999)}"
        )
    if kind == 5:
        return f"{i:>7} it [00:{i % 60:02d}, {rng.random() * 50:.2f}it/s]"
    if kind == 7:
        return f"WARNING: checkpoint step {i} took {rng.random() * 2:.2f}s (saving to /tmp/ckpt)"
    return f"GPU0 mem {rng.randint(1000, 80000)}MiB util {rng.randint(0, 100)}%"


def text_log(lines: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    start = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    out = []
    for i in range(lines):
        if i % 10 == 9:
            stamp = (start + dt.timedelta(milliseconds=i)).isoformat(timespec="milliseconds")
            stamp = stamp.replace("+00:00", "Z")
            out.append(
                f"{stamp} epoch={i // 10000} step={i} loss={rng.random():.6f} "
                f"accuracy={rng.random():.4f}"
            )
        else:
            out.append(_noise(rng, i))
    return ("\n".join(out) + "\n").encode()


def custom_log(lines: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        if i % 10 == 9:
            out.append(
                f"{{metricName: loss, metricValue: {rng.random():.4f}}};"
                f"{{metricName: accuracy, metricValue: {rng.random():.4f}}}"
            )
        else:
            out.append(_noise(rng, i))
    return ("\n".join(out) + "\n").encode()


def json_log(lines: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        if i % 10 == 9:
            record = {
                "timestamp": 1714564800.0 + i / 1000,
                "step": i // 10,
                "loss": round(rng.random(), 6),
                "accuracy": round(rng.random(), 4),
            }
        else:
            record = {
                "event": "batch",
                "batch": i,
                "samples": i * 32,
                "lr": 0.001,
                "seconds": round(rng.random(), 3),
            }
        out.append(json.dumps(record, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


# -- throughput ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Throughput:
    name: str
    lines: int
    observations: int
    wall: float  # median seconds
    cpu: float

    @property
    def wall_rate(self) -> float:
        return self.lines / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.lines / self.cpu


def parse_all(parser: Parser, data: bytes) -> int:
    found = 0
    for i in range(0, len(data), CHUNK):
        found += len(parser.feed(data[i : i + CHUNK]))
    return found + len(parser.flush())


def measure(
    name: str, make: Callable[[], Parser], data: bytes, lines: int, repeat: int
) -> Throughput:
    walls, cpus, found = [], [], 0
    for _ in range(repeat):
        parser = make()
        w0, c0 = time.perf_counter(), time.process_time()
        found = parse_all(parser, data)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    expected = 2 * (lines // 10)
    if found != expected:
        raise AssertionError(f"{name}: parsed {found} observations, expected {expected}")
    return Throughput(name, lines, found, statistics.median(walls), statistics.median(cpus))


def measure_end_to_end(data: bytes, lines: int, repeat: int, workdir: Path) -> Throughput:
    from tunery.store import open_store

    objective = Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))
    walls, cpus, found = [], [], 0
    for r in range(repeat):
        store = open_store(f"sqlite:///{workdir / f'e2e-{r}.db'}")
        try:
            w0, c0 = time.perf_counter(), time.process_time()
            collector = TrialCollector(store, "bench", objective, TextParser(METRICS))
            for i in range(0, len(data), CHUNK):
                collector.feed(data[i : i + CHUNK])
            collector.close()
            cpus.append(time.process_time() - c0)
            walls.append(time.perf_counter() - w0)
            found = sum(store.observation_counts("bench").values())
        finally:
            store.close()
    if found != 2 * (lines // 10):
        raise AssertionError(f"end to end: stored {found} rows, expected {2 * (lines // 10)}")
    name = "TEXT default → TrialCollector → SQLite"
    return Throughput(name, lines, found, statistics.median(walls), statistics.median(cpus))


# -- latency ---------------------------------------------------------------------------------
PROBE = """
import random, sys, time
rng = random.Random(1)
for i in range({probes}):
    for _ in range(9):
        print(f"batch {{i}} step {{rng.random():.5f}} lr=0.001")
    print(f"latency_probe={{time.time():.6f}}")
    sys.stdout.flush()
    time.sleep({period})
"""


@dataclass(frozen=True)
class Latency:
    name: str
    samples: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_latency(mode: str, probes: int, workdir: Path, period: float = 0.1) -> Latency:
    from tunery.store import open_store

    url = f"sqlite:///{workdir / f'latency-{mode}.db'}"
    store, reader_store = open_store(url), open_store(url)
    objective = Objective(ObjectiveType.MINIMIZE, "latency_probe")
    collector = TrialCollector(store, "probe", objective, TextParser(["latency_probe"]))
    log_path = workdir / f"latency-{mode}.log"
    script = PROBE.format(probes=probes, period=period)
    samples: list[float] = []
    done = threading.Event()

    def poll() -> None:
        seen = 0
        while not done.is_set() or seen < probes:
            rows = reader_store.get_observations("probe", "latency_probe")
            now = time.time()
            for row in rows[seen:]:
                samples.append(now - float(row.value))
            seen = len(rows)
            if done.is_set() and seen >= probes:
                return
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        if mode == "pipe":
            proc = subprocess.Popen(
                [sys.executable, "-u", "-c", script],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert proc.stdout is not None
            PipeReader(proc.stdout, log_path, collector.feed).run()
            proc.wait()
        else:
            with log_path.open("ab") as out:
                proc = subprocess.Popen([sys.executable, "-u", "-c", script], stdout=out)
            FileTailer(log_path, collector.feed, is_done=lambda: proc.poll() is not None).run()
        collector.close()
        done.set()
        poller.join(30)
    finally:
        store.close()
        reader_store.close()
    name = {"pipe": "process pipe → SQLite", "file": "log file tail → SQLite"}[mode]
    return Latency(name, samples)


# -- report ----------------------------------------------------------------------------------
def environment() -> str:
    import grpc
    import sqlalchemy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{dt.date.today().isoformat()}; {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"grpcio {grpc.__version__}, SQLite {__import__('sqlite3').sqlite_version}"
    )


def report(throughputs: list[Throughput], latencies: list[Latency], markdown: bool) -> str:
    rows = [
        (
            t.name,
            f"{t.lines:,}",
            f"{t.observations:,}",
            f"{t.wall_rate:,.0f}",
            f"{t.cpu_rate:,.0f}",
            ("yes" if t.cpu_rate >= THROUGHPUT_BAR else "NO") if t.name == DEFAULT_ROW else "",
        )
        for t in throughputs
    ]
    head = ("source", "lines", "observations", "lines/s (wall)", "lines/s (CPU)", "≥ 1M/s")
    lat_rows = [
        (
            lat.name,
            str(len(lat.samples)),
            f"{lat.quantile(0.5) * 1000:.0f}",
            f"{lat.quantile(0.95) * 1000:.0f}",
            f"{max(lat.samples) * 1000:.0f}",
            "yes" if max(lat.samples) <= LATENCY_BAR else "NO",
        )
        for lat in latencies
        if lat.samples
    ]
    lat_head = ("print → store", "probes", "p50 ms", "p95 ms", "max ms", "≤ 1 s")
    return (
        _table(head, rows, markdown)
        + "\n"
        + (_table(lat_head, lat_rows, markdown) if lat_rows else "")
    )


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.collector", description=__doc__.split("\n")[0]
    )
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--probes", type=int, default=30, help="latency samples per source (0: skip)")
    p.add_argument("--no-store", action="store_true", help="skip the SQLite rows")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)

    print(f"generating logs of {args.lines:,} lines ...", file=sys.stderr)
    logs = {
        "default": text_log(args.lines),
        "custom": custom_log(args.lines),
        "json": json_log(args.lines),
    }
    throughputs = [
        measure(
            DEFAULT_ROW,
            lambda: TextParser(METRICS),
            logs["default"],
            args.lines,
            args.repeat,
        ),
        measure(
            "TEXT, custom filter (Katib file example)",
            lambda: TextParser(METRICS, [KATIB_FILE_FILTER]),
            logs["custom"],
            args.lines,
            args.repeat,
        ),
        measure(
            "JSON lines", lambda: JsonLinesParser(METRICS), logs["json"], args.lines, args.repeat
        ),
    ]
    latencies: list[Latency] = []
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        workdir = Path(tmp)
        if not args.no_store:
            throughputs.append(
                measure_end_to_end(logs["default"], args.lines, min(args.repeat, 3), workdir)
            )
            if args.probes:
                latencies = [measure_latency(m, args.probes, workdir) for m in ("pipe", "file")]
    print(f"# Collector ({environment()})")
    given = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# command: python -m bench.collector {given}".rstrip())
    print(report(throughputs, latencies, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
