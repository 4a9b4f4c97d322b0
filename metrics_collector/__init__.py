"""Metric parsers, collectors (process- and file-attached), push API and the DBManager service.

Every metric arrives or the trial says why. Modules, each with one role (importing this
package imports nothing else, so the parsers load without grpc):

- ``parsers``: bytes → :class:`~tunery.trials.Observation` (TEXT regex filters, JSON lines),
  streaming, deterministic, Katib's default filter exact and fast (``make_parser``).
- ``collector``: ``TrialCollector`` writes one trial's observations to the store, batched and
  visible within a second; write-ahead-log ``replay``; early-stop seam; end-of-trial summary
  and the MetricsUnavailable message (``metrics_unavailable_message``).
- ``sources``: ``PipeReader`` (a child's output → log file, echo, collector) and
  ``FileTailer`` (a growing file, with rotation and truncation).
- ``push``: ``report_metrics`` (re-exported as ``tunery.report_metrics``).
- ``dbmanager`` / ``dbclient``: Katib's ``api.v1.beta1.DBManager`` service over the store, and a
  client that looks like the store.
- ``stoprules`` / ``sidecar`` (``python -m metrics_collector``): the Kubernetes sidecar.
- ``timefmt``, ``tail``, ``errors``: RFC3339, the last lines of output, the error tree.

Never imports ``earlystop`` or ``controller``: the controller hands collectors a stop check.
"""
