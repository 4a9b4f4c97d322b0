"""The Kubernetes metrics sidecar: tail the trial's output file, push to a DBManager, stop early.

Run as ``python -m metrics_collector`` (the controller adds this container to the trial's
pod when it renders the job). Accepts Katib's sidecar flags (``-t -m -o-type -s-db -path -f
-format -stop-rule -s-earlystop -w``) and long aliases (``--trial-name`` ...), so it also
stands in for Katib's ``file-metrics-collector``.

What it does:

1. Reads what the DBManager already holds for the trial (a restarted sidecar adds nothing
   twice), then tails ``-path`` from its start: its own :class:`TrialCollector` parses and
   pushes batches with ``ReportObservationLog``, visible within a second.
2. Applies ``-stop-rule`` rules as metrics arrive (:mod:`metrics_collector.stoprules`). When
   all hold: writes ``early-stopped`` to ``<marker-dir>/early-stopped`` and (Katib's wrapper)
   ``<marker-dir>/<pid>.pid``, terminates every descendant of the main process (the training
   program under the wrapper shell, its workers; the main process itself when it has none),
   pushes what was collected, waits for the main process, and calls
   ``EarlyStopping.SetTrialStatus`` at ``-s-earlystop``.
3. Exits when the main process is done: ``<marker-dir>/tunery.exit`` exists (the operator's
   wrapper writes the exit status there), ``<marker-dir>/<pid>.pid`` says ``completed``
   (Katib's wrapper), or the process is gone; or on SIGTERM (the kubelet stops a native
   sidecar that way once the trial's containers end). The file is read to its end first. If
   the objective was never reported, it pushes Katib's ``unavailable`` row, which marks the
   trial MetricsUnavailable.

The main process: ``--pid``; else the first integer in ``--pid-file`` (waited for); else the
process whose command line holds ``--main-argv0`` (default ``tunery-trial``: the operator runs
trials as ``sh -c WRAPPER tunery-trial <command...>``). Pods need
``shareProcessNamespace: true`` for ``/proc`` and signals to reach it; without it the sidecar
still collects and ends on ``tunery.exit`` or SIGTERM, but cannot stop the trial.

``--kind`` picks the source (default ``File``: ``-path`` is a file to tail, Katib's
StdOut and File collectors): ``TensorFlowEvent`` reads the TensorBoard event files under the
folder ``-path`` as they are written (:mod:`metrics_collector.tfevents`; Katib's metric naming,
``test/accuracy`` for the ``accuracy`` tag under ``test/``); ``PrometheusMetric`` scrapes the
URL ``-path`` (``http://127.0.0.1:<port><path>``: the sidecar shares the pod's network) every
second while the trial runs (:mod:`metrics_collector.prometheus`). Both need ``--marker-dir``.
``--follow-container NAME`` (StdOut of a primary container without a command, which the
operator cannot wrap) reads that container's log through the Kubernetes API instead of a file
(:mod:`metrics_collector.podlog`); it cannot stop the trial early. ``--marks-only``: the trial's
processes are not visible (a Tekton task's pod shares no process namespace), so only the
wrapper's marks (or SIGTERM) end the collection, and early stopping is impossible.

Exit codes: 0 done; 1 observations could not be pushed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from metrics_collector.collector import TrialCollector
from metrics_collector.dbclient import NAMESPACE_ENV, DBManagerClient, default_dbmanager_address
from metrics_collector.errors import (
    FlushError,
    InvalidStopRuleError,
    MetricsFormatError,
    MissingDependencyError,
)
from metrics_collector.parsers import MetricsFormat, make_parser
from metrics_collector.podlog import DEFAULT_TOKEN_DIR, PodApi, PodLogFollower
from metrics_collector.polling import Poller
from metrics_collector.prometheus import PrometheusScraper
from metrics_collector.sources import FileTailer
from metrics_collector.stoprules import (
    KatibStopRules,
    StopRule,
    objective_for,
)
from metrics_collector.tfevents import TFEventReader
from tunery.api import api_pb2, api_pb2_grpc
from tunery.retry import DEFAULT_OUTAGE_LIMIT_S, InvalidRetryPolicyError, RetryPolicy
from tunery.store.errors import StoreUnavailableError
from tunery.tls import open_channel
from tunery.trials import UNAVAILABLE, ZERO_TIME, ObjectiveType, Observation, StopDecision

log = logging.getLogger("metrics_collector.sidecar")

EARLY_STOPPED_MARK = "early-stopped"
COMPLETED_MARK = "completed"
EARLY_STOPPED_FILE = "early-stopped"
"""Written in the marker folder before the trial is signalled: its wrapper then exits 0."""
EXIT_FILE = "tunery.exit"
"""The operator's wrapper writes the trial's exit status here when it ends."""
WRAPPER_ARGV0 = "tunery-trial"
"""The operator runs the trial as ``sh -c WRAPPER tunery-trial <command...>``."""
MAIN_EXIT_WAIT = 60.0
FILE_KIND = "File"
TFEVENT_KIND = "TensorFlowEvent"
PROMETHEUS_KIND = "PrometheusMetric"
KINDS = ("StdOut", FILE_KIND, TFEVENT_KIND, PROMETHEUS_KIND)
POLL_INTERVAL = 1.0
"""Seconds between two reads of the event files or two scrapes of the endpoint."""


@dataclass(frozen=True)
class SidecarConfig:
    """The sidecar's settings (see :func:`parse_args`)."""

    trial_name: str
    metric_names: tuple[str, ...]
    path: Path
    kind: str = FILE_KIND
    """``StdOut``/``File``: tail ``path``; ``TensorFlowEvent``: read the event files under the
    folder ``path``; ``PrometheusMetric``: scrape ``url``."""
    url: str = ""
    objective_type: ObjectiveType = ObjectiveType.MAXIMIZE
    dbmanager_address: str = field(default_factory=default_dbmanager_address)
    format: MetricsFormat = MetricsFormat.TEXT
    filters: tuple[str, ...] = ()
    stop_rules: tuple[StopRule, ...] = ()
    earlystop_address: str | None = None
    pid: int | None = None
    pid_file: Path | None = None
    marker_dir: Path | None = None
    main_argv0: str = WRAPPER_ARGV0
    poll_interval: float = 0.1
    echo: bool = False
    kill_grace: float = 10.0
    flush_timeout: float = DEFAULT_OUTAGE_LIMIT_S
    """How long the last observations wait for an unavailable DBManager (the outage limit)."""
    rpc_timeout: float = 60.0
    follow_container: str = ""
    """Read this container's log through the Kubernetes API instead of tailing ``path``
    (StdOut for a primary container without a command: :mod:`metrics_collector.podlog`)."""
    api_server: str = ""
    token_dir: Path = Path(DEFAULT_TOKEN_DIR)
    marks_only: bool = False
    """The trial's processes are not visible (no shared process namespace, e.g. a Tekton
    task's pod): the trial is done only by the wrapper's marks (or SIGTERM), and it cannot be
    stopped early."""

    @property
    def marks(self) -> Path:
        return self.marker_dir or self.path.parent


class MainProcess:
    """The trial's main process as the sidecar sees it (shared process namespace).

    Found by ``pid``, else the first integer in ``pid_file``, else (``argv0``) the process
    whose command line holds that argument: the operator runs the trial as
    ``sh -c WRAPPER tunery-trial <command...>``. Done when ``<marker_dir>/tunery.exit`` exists
    (the operator's wrapper writes it), when ``<marker_dir>/<pid>.pid`` says ``completed``
    (Katib's wrapper), or when the process is gone.
    """

    def __init__(
        self,
        pid: int | None,
        pid_file: Path | None,
        marker_dir: Path,
        argv0: str | None = WRAPPER_ARGV0,
        *,
        marks_only: bool = False,
    ) -> None:
        self._pid = pid
        self.pid_file = pid_file
        self.marker_dir = marker_dir
        self.argv0 = None if marks_only else argv0
        self.marks_only = marks_only

    def pid(self) -> int | None:
        if self._pid is None and self.pid_file is not None:
            try:
                text = self.pid_file.read_text().split()
                self._pid = int(text[0]) if text else None
            except (FileNotFoundError, ValueError):
                return None
        elif self._pid is None and self.argv0:
            self._pid = find_process(self.argv0)
        return self._pid

    def marker(self) -> Path | None:
        pid = self.pid()
        return None if pid is None else self.marker_dir / f"{pid}.pid"

    def is_done(self) -> bool:
        if (self.marker_dir / EXIT_FILE).exists():
            return True
        pid = self.pid()
        if pid is None:
            return False
        marker = self.marker()
        if marker is not None and marker.exists():
            try:
                if marker.read_text().strip().startswith(COMPLETED_MARK):
                    return True
            except OSError:
                pass
        # the pid is the wrapper's in its own namespace when processes are not shared
        return False if self.marks_only else not process_alive(pid)

    def stop(self, grace: float) -> None:
        """Mark ``early-stopped``, then terminate the training program (SIGTERM, SIGKILL).

        The marks (``<dir>/early-stopped``; Katib's ``<dir>/<pid>.pid``) come first, so the
        wrapper exits 0. Every descendant of the main process is signalled (the training
        program, its workers, a ``tee``), not the wrapper itself, which reports the stop; a
        main process without descendants is signalled itself.
        """
        pid = self.pid()
        marks = [self.marker_dir / EARLY_STOPPED_FILE]
        if pid is not None:
            marks.append(self.marker_dir / f"{pid}.pid")
        for mark in marks:
            try:
                mark.parent.mkdir(parents=True, exist_ok=True)
                mark.write_text(EARLY_STOPPED_MARK + "\n")
            except OSError as e:
                log.warning("cannot write %s: %s", mark, e)
        if self.marks_only:
            log.warning("the trial's processes are not visible here: cannot signal the trial")
            return
        if pid is None:
            log.warning("main process not found: cannot signal the trial")
            return
        targets = descendants_of(pid) or [pid]
        log.info("stopping process(es) %s under main process %d", targets, pid)
        _signal_all(targets, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(process_alive(p) for p in targets):
            time.sleep(0.1)
        _signal_all([p for p in targets if process_alive(p)], signal.SIGKILL)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_done():
                return True
            time.sleep(0.2)
        return self.is_done()


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except FileNotFoundError:
        return False
    except (OSError, ValueError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid → (parent pid, argv) of every visible process."""
    found: dict[int, tuple[int, list[str]]] = {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (ppid, argv)
    return found


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` from ``/proc``."""
    return sorted(p for p, (ppid, _) in _processes().items() if ppid == pid)


def descendants_of(pid: int) -> list[int]:
    """Children, grandchildren... of ``pid`` from ``/proc``, parents first."""
    table = _processes()
    out: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop(0)
        kids = sorted(p for p, (ppid, _) in table.items() if ppid == parent and p not in out)
        out.extend(kids)
        frontier.extend(kids)
    return out


def find_process(argv0: str) -> int | None:
    """The other process whose command line has ``argv0`` as an argument (its forked
    subshells share the command line: the topmost one is taken)."""
    me = os.getpid()
    table = _processes()
    matches = {p for p, (_, argv) in table.items() if p != me and argv0 in argv[1:]}
    tops = [p for p in matches if table[p][0] not in matches]
    return min(tops) if tops else None


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            log.warning("cannot signal process %d: %s", pid, e)


def set_trial_status(address: str, trial_name: str, timeout: float, attempts: int = 5) -> bool:
    """``EarlyStopping.SetTrialStatus(trial_name)``; True when the service accepted it."""
    with open_channel(address) as channel:
        stub = api_pb2_grpc.EarlyStoppingStub(channel)
        for attempt in range(1, attempts + 1):
            try:
                stub.SetTrialStatus(
                    api_pb2.SetTrialStatusRequest(trial_name=trial_name),
                    timeout=timeout,
                    wait_for_ready=True,
                )
                return True
            except grpc.RpcError as e:
                log.warning(
                    "SetTrialStatus(%s) at %s failed (%d/%d): %s",
                    trial_name,
                    address,
                    attempt,
                    attempts,
                    e.details() if hasattr(e, "details") else e,
                )
                time.sleep(min(2.0**attempt, 10.0))
    return False


class Sidecar:
    """One run of the sidecar; :meth:`run` returns the exit code."""

    def __init__(self, config: SidecarConfig, client: DBManagerClient | None = None) -> None:
        self.config = config
        self.client = client or DBManagerClient(
            config.dbmanager_address,
            timeout=config.rpc_timeout,
            namespace=os.environ.get(NAMESPACE_ENV),
        )
        self.main = MainProcess(
            config.pid,
            config.pid_file,
            config.marks,
            config.main_argv0 or None,
            marks_only=config.marks_only,
        )
        objective = objective_for(config.metric_names, config.objective_type)
        self.rules = KatibStopRules(config.stop_rules, objective) if config.stop_rules else None
        self.collector = TrialCollector(
            self.client,
            config.trial_name,
            objective,
            make_parser(config.metric_names, config.format, config.filters),
            stop_check=self.rules,
            on_stop=self._on_stop,
            stop_metrics=self.rules.metric_names if self.rules else None,
        )
        self.tailer: FileTailer | Poller | PodLogFollower
        if config.follow_container:
            api = PodApi.from_env(api_server=config.api_server, token_dir=config.token_dir)
            self.tailer = PodLogFollower(api, config.follow_container, self._feed)
        elif config.kind == TFEVENT_KIND:
            reader = TFEventReader(config.path, config.metric_names)
            self.tailer = Poller(
                reader.poll, self.collector.add, is_done=self.main.is_done, interval=POLL_INTERVAL
            )
        elif config.kind == PROMETHEUS_KIND:
            scraper = PrometheusScraper(config.url, config.metric_names)
            self.tailer = Poller(
                scraper.poll, self.collector.add, is_done=self.main.is_done, interval=POLL_INTERVAL
            )
        else:
            self.tailer = FileTailer(
                config.path,
                self._feed,
                is_done=self.main.is_done,
                on_reset=self.collector.end_of_input,
                poll_interval=config.poll_interval,
            )
        self._stopper: threading.Thread | None = None
        self._terminated = threading.Event()

    def terminate(self) -> None:
        """SIGTERM: read the file to its end, push, exit."""
        self._terminated.set()
        self.tailer.stop(drain=True)

    def run(self) -> int:
        c = self.config
        log.info(
            "collecting %s of trial %s from %s (%s) into DBManager at %s",
            ",".join(c.metric_names),
            c.trial_name,
            c.url
            or (f"the log of container {c.follow_container}" if c.follow_container else c.path),
            c.kind if c.kind in (TFEVENT_KIND, PROMETHEUS_KIND) else c.format.value,
            c.dbmanager_address,
        )
        if not self._resume():
            self.collector.close(timeout=0)
            return 0
        self.tailer.run()
        if self._stopper is not None:
            self._stopper.join()
        try:
            self.collector.close(timeout=c.flush_timeout)
            objective = c.metric_names[0]
            if not self.client.get_observations(c.trial_name, objective):
                # Katib's contract: an "unavailable" row marks the trial MetricsUnavailable.
                log.warning("objective %s was never reported: %s", objective, UNAVAILABLE)
                self.client.add_observations(
                    c.trial_name, [Observation.of(objective, UNAVAILABLE, 0, ZERO_TIME)]
                )
        except (FlushError, StoreUnavailableError) as e:
            log.error("%s", e)
            return 1
        finally:
            self.client.close()
        log.info("done: %d observation(s) pushed", self.collector.written)
        return 0

    def _resume(self) -> bool:
        """Skip what the DBManager holds (restart); retry while it is unreachable."""
        delay = 1.0
        while not self._terminated.is_set():
            try:
                if self.config.kind in (TFEVENT_KIND, PROMETHEUS_KIND) or (
                    self.config.follow_container
                ):
                    found = self.collector.resume()  # the source has no byte offsets
                else:
                    path = self.config.path
                    found = self.collector.resume(path.stat().st_size if path.exists() else 0)
                if found:
                    log.info("DBManager already holds %d observation(s) of this trial", found)
                return True
            except StoreUnavailableError as e:
                log.warning("DBManager not reachable yet (%s); retrying in %.0fs", e, delay)
                self._terminated.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def _feed(self, chunk: bytes) -> None:
        if self.config.echo:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        self.collector.feed(chunk)

    def _on_stop(self, decision: StopDecision) -> None:
        log.info("early stopping trial %s: %s", self.config.trial_name, decision.message)
        self._stopper = threading.Thread(target=self._stop_trial, name="early-stop", daemon=True)
        self._stopper.start()

    def _stop_trial(self) -> None:
        c = self.config
        self.main.stop(c.kill_grace)
        if not self.main.wait(MAIN_EXIT_WAIT):
            log.warning("main process still running %.0fs after the stop", MAIN_EXIT_WAIT)
        if c.earlystop_address:
            set_trial_status(c.earlystop_address, c.trial_name, c.rpc_timeout)


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m metrics_collector",
        description="tunery metrics sidecar: tail a trial's output, push to a DBManager.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("-t", "--trial-name", required=True, help="trial name")
    add("-m", "--metric-names", required=True, help="metric names, ';'-separated, objective first")
    add("-o-type", "--objective-type", default="maximize", choices=["minimize", "maximize"])
    add("-s-db", "-s", "--db-manager", dest="db_manager", default=None, help="DBManager host:port")
    add(
        "-path",
        "--path",
        required=True,
        help="file to tail (the trial's output); the event folder (TensorFlowEvent); the URL "
        "to scrape (PrometheusMetric)",
    )
    add("--kind", default=FILE_KIND, choices=KINDS, help="collector kind (default File)")
    add("-f", "--metrics-format", default="", help="regex filters, ';'-separated (Katib)")
    add("--filter", action="append", default=[], help="one regex filter (not split on ';')")
    add("-format", "--format", default="TEXT", help="TEXT or JSON")
    add("-stop-rule", "--stop-rule", action="append", default=[], help="name;value;cmp;startStep")
    add("-s-earlystop", "--early-stopping", default="", help="EarlyStopping host:port")
    add("-w", "--wait-all-processes", default="true", help="accepted for Katib compatibility")
    add("--pid", type=int, default=None, help="main process id")
    add("--pid-file", type=Path, default=None, help="file holding the main process id")
    add("--marker-dir", type=Path, default=None, help="marker folder (default: -path's)")
    add("--main-argv0", default=WRAPPER_ARGV0, help="find the main process by this argument")
    add("--poll-interval", type=float, default=0.1)
    add("--echo", action="store_true", help="copy the tailed output to stdout")
    add("--kill-grace", type=float, default=10.0)
    add(
        "--follow-container",
        default="",
        help="read this container's log through the Kubernetes API (POD_NAME, POD_NAMESPACE) "
        "instead of tailing -path",
    )
    add("--api-server", default="", help="Kubernetes API URL (default: the in-cluster one)")
    add("--token-dir", type=Path, default=Path(DEFAULT_TOKEN_DIR), help="token and ca.crt")
    add(
        "--marks-only",
        action="store_true",
        help="the trial's processes are not visible: done only by the wrapper's marks",
    )
    add(
        "--flush-timeout",
        type=float,
        default=None,
        help="seconds the last observations wait for an unavailable DBManager "
        "(default: $TUNERY_OUTAGE_LIMIT, else 600)",
    )
    add("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[SidecarConfig, bool]:
    """Katib-style or long flags → config (and the verbose flag).

    Raises:
        SystemExit: bad arguments (argparse prints the usage), exit code 2.
    """
    parser = build_parser()
    ns = parser.parse_args(argv)
    names = tuple(n.strip() for n in ns.metric_names.split(";") if n.strip())
    if not names:
        parser.error("-m needs at least one metric name")
    try:
        filters = tuple(f for f in ns.metrics_format.split(";") if f) + tuple(ns.filter)
        rules = tuple(StopRule.parse(r) for r in ns.stop_rule)
        fmt = MetricsFormat(ns.format.upper())
        make_parser(names, fmt, filters)  # validate the filters now
    except (InvalidStopRuleError, MetricsFormatError) as e:
        parser.error(str(e))
    except ValueError:
        parser.error(f"-format must be TEXT or JSON, got {ns.format!r}")
    url = ""
    if ns.kind in (TFEVENT_KIND, PROMETHEUS_KIND) and ns.marker_dir is None:
        parser.error(f"--kind {ns.kind} needs --marker-dir (where the trial's wrapper marks)")
    if ns.kind == PROMETHEUS_KIND:
        url = ns.path
        if not url.startswith("http://"):
            parser.error(f"-path must be an http:// URL for --kind {PROMETHEUS_KIND}, got {url!r}")
        try:
            PrometheusScraper(url, names)
        except MetricsFormatError as e:
            parser.error(str(e))
    if ns.kind == TFEVENT_KIND:
        try:
            TFEventReader(ns.path, names)
        except MissingDependencyError as e:
            parser.error(str(e))
    try:
        flush_timeout = RetryPolicy.from_env(limit=ns.flush_timeout).limit
    except InvalidRetryPolicyError as e:
        parser.error(str(e))
    config = SidecarConfig(
        trial_name=ns.trial_name,
        metric_names=names,
        path=Path(ns.path) if ns.kind != PROMETHEUS_KIND else Path(),
        kind=ns.kind,
        url=url,
        objective_type=ObjectiveType(ns.objective_type),
        dbmanager_address=ns.db_manager or default_dbmanager_address(),
        format=fmt,
        filters=filters,
        stop_rules=rules,
        earlystop_address=ns.early_stopping or None,
        pid=ns.pid,
        pid_file=ns.pid_file,
        marker_dir=ns.marker_dir,
        main_argv0=ns.main_argv0,
        poll_interval=ns.poll_interval,
        echo=ns.echo,
        kill_grace=ns.kill_grace,
        flush_timeout=flush_timeout,
        follow_container=ns.follow_container,
        api_server=ns.api_server,
        token_dir=ns.token_dir,
        marks_only=ns.marks_only,
    )
    if config.follow_container and config.kind not in ("StdOut", FILE_KIND):
        parser.error("--follow-container reads text output: it needs --kind StdOut or File")
    if config.follow_container and config.stop_rules:
        parser.error("--follow-container cannot stop the trial early: no -stop-rule")
    return config, ns.verbose


def main(argv: Sequence[str] | None = None) -> int:
    config, verbose = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sidecar = Sidecar(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sidecar.terminate())
    return sidecar.run()
