"""Build the dashboard's partial plotly.js bundle: only the trace types tunery's figures use.

The dashboard serves ``tunery/dashboard/static/plotly-partial.min.js`` (committed, so a fresh
machine needs no npm). This script rebuilds it from the npm ``plotly.js`` package with
esbuild, both pinned in ``tools/plotly_bundle/package.json`` (exact versions; the lock file
beside it pins their dependencies): ``plotly.js/lib/core`` plus the modules of :data:`TRACES`,
minified, with a first-line header naming the versions and the traces, which
``tests/dashboard/test_plotly_bundle.py`` compares with this script and the package file.

Usage (needs node and npm; installs into ``tools/plotly_bundle/node_modules``, ignored)::

    python tools/build_plotly.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "tools" / "plotly_bundle"
OUTPUT = ROOT / "tunery" / "dashboard" / "static" / "plotly-partial.min.js"

TRACES = ("scatter", "scattergl", "bar", "contour", "parcoords", "splom")
"""Every trace type ``tunery.visualization.figures`` and the trial page draw (scatter is in
plotly's core; it is listed for the header's sake)."""


def pinned() -> dict[str, str]:
    """The exact versions ``package.json`` pins (plotly.js, esbuild, buffer)."""
    document = json.loads((PACKAGE_DIR / "package.json").read_text())
    return dict(document["dependencies"])


def header() -> str:
    """The bundle's first line: what it was built from."""
    versions = pinned()
    return (
        f"/*! tunery partial bundle of plotly.js {versions['plotly.js']} (MIT, Plotly, Inc.),"
        f" traces: {','.join(TRACES)}; built by tools/build_plotly.py with esbuild"
        f" {versions['esbuild']} */"
    )


def entry() -> str:
    """The bundle's entry module: plotly's core and the trace modules it registers."""
    modules = [t for t in TRACES if t != "scatter"]  # core registers scatter itself
    lines = [f"  require('plotly.js/lib/{t}')," for t in modules]
    return "\n".join(
        [
            "var Plotly = require('plotly.js/lib/core');",
            "Plotly.register([",
            *lines,
            "]);",
            "module.exports = Plotly;",
            "",
        ]
    )


def build() -> Path:
    """Install the pinned packages, bundle, and write :data:`OUTPUT`."""
    lock = PACKAGE_DIR / "package-lock.json"
    install = ["npm", "ci" if lock.exists() else "install", "--ignore-scripts", "--no-audit"]
    subprocess.run([*install, "--no-fund"], cwd=PACKAGE_DIR, check=True)
    source = PACKAGE_DIR / "entry.js"
    source.write_text(entry())
    bundled = PACKAGE_DIR / "bundle.min.js"
    esbuild = PACKAGE_DIR / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [
            str(esbuild),
            source.name,
            "--bundle",
            "--minify",
            "--format=iife",
            "--global-name=Plotly",
            "--target=es2016",
            "--define:global=window",
            "--define:define.amd=false",
            "--alias:regl=@plotly/regl",  # as plotly's own build: one regl
            "--loader:.css=empty",  # maplibre's CSS, required only by map traces
            f"--outfile={bundled.name}",
        ],
        cwd=PACKAGE_DIR,
        check=True,
    )
    OUTPUT.write_text(header() + "\n" + bundled.read_text())
    source.unlink()
    bundled.unlink()
    return OUTPUT


if __name__ == "__main__":
    print(build(), file=sys.stderr)
