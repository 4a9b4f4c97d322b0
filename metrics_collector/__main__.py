"""``python -m metrics_collector``: the Kubernetes metrics sidecar (see ``sidecar``)."""

from __future__ import annotations

import sys

from metrics_collector.sidecar import main

if __name__ == "__main__":
    sys.exit(main())
