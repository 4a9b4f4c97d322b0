"""Metrics collector of the Experiment model: its pydantic models, Katib's defaults, its checks.

Part of :mod:`tunery.experiment`, which re-exports the public names. Collector kinds
follow Katib v0.18+ (``Push`` replaced ``None``); defaults are Katib's webhook defaults per kind.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field

from tunery.experiment.base import FreeForm, Node, choice
from tunery.experiment.errors import Problems, show

DEFAULT_METRICS_FILE_PATH = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR_PATH = "/var/log/katib/tfevent/"
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080


class CollectorKind(enum.StrEnum):
    STDOUT = "StdOut"
    FILE = "File"
    TENSORFLOW_EVENT = "TensorFlowEvent"
    PROMETHEUS_METRIC = "PrometheusMetric"
    CUSTOM = "Custom"
    PUSH = "Push"


class FileSystemKind(enum.StrEnum):
    DIRECTORY = "Directory"
    FILE = "File"


class FileFormat(enum.StrEnum):
    TEXT = "TEXT"
    JSON = "JSON"


# -- metrics collector ------------------------------------------------------------------------


class FileSystemPath(Node):
    """Where a File, TensorFlowEvent or Custom collector reads metrics."""

    path: str | None = None
    kind: Annotated[
        FileSystemKind | None, choice(FileSystemKind, "file system kind", optional=True)
    ] = None
    format: Annotated[
        FileFormat | None, choice(FileFormat, "metrics file format", optional=True)
    ] = None


class FilterSpec(Node):
    """Regular expressions picking metrics out of text lines."""

    metrics_format: tuple[str, ...] | None = None
    """Each regex has two groups: the metric name, then its value."""


class SourceSpec(Node):
    """Where the collector reads metrics."""

    http_get: FreeForm | None = None
    """A Kubernetes HTTPGetAction (PrometheusMetric)."""
    file_system_path: FileSystemPath | None = None
    filter: FilterSpec | None = None


class CollectorSpec(Node):
    """The kind of metrics collector."""

    kind: Annotated[
        CollectorKind,
        choice(
            CollectorKind,
            "collector kind",
            hints={"None": 'was renamed "Push" in Katib v0.18; use kind Push'},
        ),
    ]
    custom_collector: FreeForm | None = None
    """A Kubernetes Container running a custom collector (kind Custom)."""


class MetricsCollectorSpec(Node):
    """How trial metrics are collected."""

    source: SourceSpec | None = None
    collector: CollectorSpec = Field(
        default_factory=lambda: CollectorSpec.model_validate({"kind": CollectorKind.STDOUT.value})
    )
    """The collector; StdOut when absent."""

    _requires: ClassVar[tuple[str, ...]] = ("collector",)

    @classmethod
    def _defaults(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Katib's defaulting: StdOut when absent, and default paths per collector kind."""
        out = dict(data)
        if out.get("collector") is None:
            out["collector"] = {"kind": CollectorKind.STDOUT.value}
        collector = out["collector"]
        kind = collector.get("kind") if isinstance(collector, Mapping) else None
        if kind not in ("PrometheusMetric", "File", "TensorFlowEvent"):
            return out
        source = out.get("source")
        source = {} if source is None else source
        if not isinstance(source, Mapping):
            return out
        source = out["source"] = dict(source)
        if kind == "PrometheusMetric":
            http = source.get("httpGet")
            http = {} if http is None else http
            if isinstance(http, Mapping):
                http = source["httpGet"] = dict(http)
                if http.get("path") in (None, ""):
                    http["path"] = DEFAULT_PROMETHEUS_PATH
                if http.get("port") in (None, "", 0, "0"):
                    http["port"] = DEFAULT_PROMETHEUS_PORT
            return out
        fsp = source.get("fileSystemPath")
        fsp = {} if fsp is None else fsp
        if isinstance(fsp, Mapping):
            fsp = source["fileSystemPath"] = dict(fsp)
            is_file = kind == "File"
            if fsp.get("kind") in (None, ""):
                fsp["kind"] = "File" if is_file else "Directory"
            if fsp.get("path") in (None, ""):
                fsp["path"] = DEFAULT_METRICS_FILE_PATH if is_file else DEFAULT_TFEVENT_DIR_PATH
            if is_file and fsp.get("format") in (None, ""):
                fsp["format"] = FileFormat.TEXT.value
        return out

    def _check(self, problems: Problems) -> None:
        _check_collector(self, problems)

    @property
    def kind(self) -> CollectorKind:
        return self.collector.kind

    @property
    def metrics_formats(self) -> tuple[str, ...]:
        """The custom metric regexes (empty: the collector's default ``name=value`` one)."""
        source = self.source
        if source is None or source.filter is None:
            return ()
        return source.filter.metrics_format or ()


def _check_collector(mc: MetricsCollectorSpec, problems: Problems) -> None:
    kind = mc.collector.kind
    source = mc.source or SourceSpec()
    fsp, http, flt = source.file_system_path, source.http_get, source.filter

    def unused(field: str) -> None:
        problems.add(f"is not used by the {kind} collector", "source", field)

    if kind is not CollectorKind.CUSTOM and mc.collector.custom_collector is not None:
        problems.add("is used only by the Custom collector", "collector", "customCollector")
    if kind in (CollectorKind.STDOUT, CollectorKind.PUSH):
        if fsp is not None:
            unused("fileSystemPath")
        if http is not None:
            unused("httpGet")
        if kind is CollectorKind.PUSH and flt is not None:
            unused("filter")
    elif kind in (CollectorKind.FILE, CollectorKind.TENSORFLOW_EVENT):
        if http is not None:
            unused("httpGet")
        is_file = kind is CollectorKind.FILE
        want = FileSystemKind.FILE if is_file else FileSystemKind.DIRECTORY
        if fsp is None:  # only when defaulting could not run; keep the message useful
            problems.add(f"is required for the {kind} collector", "source", "fileSystemPath")
            return
        if fsp.kind is not want:
            problems.add(
                f"{show(fsp.kind and fsp.kind.value)} must be {want} for the {kind} collector",
                "source",
                "fileSystemPath",
                "kind",
            )
        _check_absolute(fsp.path, problems)
        if is_file and fsp.format is FileFormat.JSON and flt is not None:
            problems.add(
                "must be omitted when fileSystemPath.format is JSON (JSON lines are read by key)",
                "source",
                "filter",
            )
        if not is_file:
            if fsp.format is not None:
                problems.add(
                    "must be omitted for the TensorFlowEvent collector",
                    "source",
                    "fileSystemPath",
                    "format",
                )
            if flt is not None:
                unused("filter")
    elif kind is CollectorKind.PROMETHEUS_METRIC:
        if fsp is not None:
            unused("fileSystemPath")
        _check_http_get(http or {}, problems)
    elif kind is CollectorKind.CUSTOM:
        if mc.collector.custom_collector is None:
            problems.add(
                "is required for the Custom collector (the collector's container)",
                "collector",
                "customCollector",
            )
        if fsp is not None:
            if fsp.kind is None:
                problems.add("is required: File or Directory", "source", "fileSystemPath", "kind")
            _check_absolute(fsp.path, problems)
    if flt is not None:
        _check_filter(flt, problems)


def _check_absolute(path: str | None, problems: Problems) -> None:
    if not path:
        problems.add("is required", "source", "fileSystemPath", "path")
    elif not path.startswith("/"):
        problems.add(f"{show(path)} must be an absolute path", "source", "fileSystemPath", "path")


def _check_http_get(http: Mapping[str, Any], problems: Problems) -> None:
    port = http.get("port")
    number = port if isinstance(port, int) and not isinstance(port, bool) else None
    if isinstance(port, str) and port.isascii() and port.isdigit() and len(port) <= 5:
        number = int(port)
    if number is None or not 0 < number < 65536:
        problems.add(
            f"{show(port)} must be a port number from 1 to 65535 for the PrometheusMetric "
            "collector",
            "source",
            "httpGet",
            "port",
        )
    path = http.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.add(f"{show(path)} must be a path starting with /", "source", "httpGet", "path")
    scheme = http.get("scheme")
    if scheme not in (None, "") and str(scheme).upper() != "HTTP":
        problems.add(
            f"{show(scheme)} is not supported: the collector scrapes plain HTTP",
            "source",
            "httpGet",
            "scheme",
        )
    host = http.get("host")
    if host not in (None, "", "127.0.0.1", "localhost"):
        problems.add(
            f"{show(host)} is not supported: the collector scrapes the trial's own address "
            "(127.0.0.1, in the pod's network); omit host",
            "source",
            "httpGet",
            "host",
        )
    if http.get("httpHeaders"):
        problems.add(
            "are not supported: the collector sends no headers; serve the metrics without them",
            "source",
            "httpGet",
            "httpHeaders",
        )


def _check_filter(flt: FilterSpec, problems: Problems) -> None:
    formats = flt.metrics_format
    if not formats:
        problems.add(
            "must list at least one regular expression", "source", "filter", "metricsFormat"
        )
        return
    first: dict[str, int] = {}
    for i, pattern in enumerate(formats):
        if pattern in first:
            problems.add(
                f"{show(pattern)} is listed twice (also at metricsFormat[{first[pattern]}])",
                "source",
                "filter",
                "metricsFormat",
                i,
            )
            continue
        first[pattern] = i
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            problems.add(
                f"{show(pattern)} is not a valid regular expression: {exc.msg}",
                "source",
                "filter",
                "metricsFormat",
                i,
            )
            continue
        if groups < 2:
            problems.add(
                f"{show(pattern)} has {groups} group(s); it needs two: the metric name, "
                "then the value",
                "source",
                "filter",
                "metricsFormat",
                i,
            )
