"""The partial plotly.js bundle the dashboard ships matches its build script and the figures.

``tools/build_plotly.py`` builds ``tunery/dashboard/static/plotly-partial.min.js`` from the npm
packages pinned in ``tools/plotly_bundle/package.json``; the committed bundle's header names
what it was built from. These tests fail when the script's trace list or pins change without a
rebuild, when a figure uses a trace type the bundle lacks, or when the served URL no longer
follows the content.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from fastapi.testclient import TestClient

from tests.dashboard.conftest import NAME
from tunery.dashboard.assets import PLOTLY_FILE, plotly_url
from tunery.visualization import figures

ROOT = Path(__file__).resolve().parents[2]
AXIS_TYPES = {"linear", "log", "date", "category", "multicategory"}


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_plotly", ROOT / "tools/build_plotly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_bundle_is_the_scripts_build() -> None:
    build = build_script()
    assert build.OUTPUT == PLOTLY_FILE
    first_line = PLOTLY_FILE.read_text().split("\n", 1)[0]
    assert first_line == build.header()
    assert f"traces: {','.join(build.TRACES)};" in first_line
    pins = build.pinned()
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in pins.values()), "exact versions only"
    lock = json.loads((build.PACKAGE_DIR / "package-lock.json").read_text())["packages"]
    for package, version in pins.items():
        assert lock[f"node_modules/{package}"]["version"] == version
    for trace in build.TRACES:
        if trace != "scatter":
            assert f"require('plotly.js/lib/{trace}')" in build.entry()


def test_the_bundle_has_every_trace_type_the_figures_use() -> None:
    source = (ROOT / "tunery" / "visualization" / "figures.py").read_text()
    used = set(re.findall(r'"type": "(\w+)"', source)) - AXIS_TYPES
    used.add(figures._gl(figures.GL_POINTS + 1))  # big experiments draw WebGL markers
    script = (PLOTLY_FILE.parent / "dashboard.js").read_text()
    traces = re.findall(r'\{ type: "(\w+)", mode:', script)  # the trial page's own traces
    assert traces == ["scatter"]
    used.update(traces)
    assert used <= set(build_script().TRACES), used - set(build_script().TRACES)


def test_plotly_is_served_at_a_content_hashed_immutable_url(client: TestClient) -> None:
    digest = hashlib.sha256(PLOTLY_FILE.read_bytes()).hexdigest()[:16]
    assert plotly_url() == f"/vendor/plotly-{digest}.min.js"
    served = client.get(plotly_url())
    assert served.status_code == 200
    assert served.content == PLOTLY_FILE.read_bytes()
    assert "immutable" in served.headers["cache-control"]
    assert served.headers["content-type"].startswith("text/javascript")
    alias = client.get("/vendor/plotly.min.js")  # the stable name: revalidated, same file
    assert alias.content == served.content and alias.headers["cache-control"] == "no-cache"
    trial = client.get(f"/api/experiments/{NAME}/trials").json()["rows"][0]["name"]
    assert f'rel="prefetch" href="{plotly_url()}"' in client.get(f"/experiments/{NAME}").text
    assert f'rel="preload" href="{plotly_url()}"' in client.get(f"/trials/{trial}").text
    assert "plotly" not in client.get("/").text  # the experiments list draws no plot
