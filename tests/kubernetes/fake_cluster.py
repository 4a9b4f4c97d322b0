"""The honest fake API server (:mod:`fake_apiserver`) as a cluster to run things against.

Two ways to run it:

- its own process, for development and the end-to-end tests, serving until killed::

      python -m tests.kubernetes.fake_cluster --port 8001 --kubeconfig /tmp/fake.kubeconfig

  installs the CRDs of ``deploy/crds`` (``--crds DIR``, repeatable, for others: ``--crds
  deploy/crds --crds tests/kubernetes/crds`` adds stand-ins of the training operator's,
  Argo's and Tekton's kinds), creates ``--namespace``
  namespaces besides the system ones, writes a kubeconfig naming it (``KUBECONFIG=...``
  then works for ``kubectl``, the ``kubernetes`` client, kopf and ``tunery operator``) and
  prints ``serving on http://127.0.0.1:PORT``. ``--port 0`` picks a free port (read it from
  the kubeconfig or that line). Every refused request is printed to stderr with its status
  and message. SIGTERM or Ctrl-C stops it.
- :class:`FakeCluster`, a context manager serving from a background thread (the ``cluster``
  fixture of the operator tests; by default with ``deploy/crds`` and the stand-ins).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, also under ``python -m``

from aiohttp import web
from fake_apiserver import Storage, build_app

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRDS = ROOT / "deploy" / "crds"
TRAINING_CRDS = Path(__file__).resolve().parent / "crds"  # stand-ins: PyTorchJob, ..., Workflow


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinition documents of every YAML file in ``directory``."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                found.append(doc)
    return found


def prepare(crds: Iterable[dict[str, Any]], namespaces: Sequence[str] = ()) -> Storage:
    """A storage with ``crds`` installed and ``namespaces`` created (through the same create
    path a client's request takes, so a broken CRD fails here)."""
    storage = Storage()
    crd_type = storage.type_of("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    for crd in crds:
        storage.create(crd_type, None, crd)
    ns_type = storage.type_of("", "v1", "namespaces")
    for name in namespaces:
        storage.create(
            ns_type, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    return storage


def kubeconfig(url: str) -> dict[str, Any]:
    """A kubeconfig document for the server at ``url`` (no credentials: it checks none)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }


async def _start(
    storage: Storage, port: int, host: str = "127.0.0.1", *, log_refusals: bool = False
) -> tuple[web.AppRunner, str]:
    app = build_app(storage, log_refusals=log_refusals)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


class FakeCluster:
    """The fake API server on 127.0.0.1, served from a background event-loop thread."""

    def __init__(
        self, crds: Iterable[dict[str, Any]] | None = None, namespaces: Sequence[str] = ()
    ) -> None:
        if crds is None:
            crds = load_crds(DEFAULT_CRDS) + load_crds(TRAINING_CRDS)
        self.storage = prepare(crds, namespaces)
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fake-apiserver", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner, self.url = await _start(self.storage, 0)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> FakeCluster:
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the fake API server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def api_client(self) -> Any:
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)


async def _serve_until_stopped(storage: Storage, port: int, kubeconfig_path: Path | None) -> None:
    runner, url = await _start(storage, port, log_refusals=True)
    if kubeconfig_path is not None:
        kubeconfig_path.write_text(yaml.safe_dump(kubeconfig(url)))
    print(f"serving on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kubernetes.fake_cluster",
        description="Serve the fake Kubernetes API server until killed.",
    )
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--kubeconfig", type=Path, help="write a kubeconfig naming the server here"
    )
    parser.add_argument(
        "--crds",
        type=Path,
        action="append",
        help="install the CRDs of the YAML files in this folder (repeatable; default deploy/crds)",
    )
    parser.add_argument("--namespace", action="append", default=[], help="create this namespace")
    args = parser.parse_args(argv)
    try:
        folders = args.crds or [DEFAULT_CRDS]
        storage = prepare([crd for folder in folders for crd in load_crds(folder)], args.namespace)
    except Exception as exc:  # a CRD or namespace the server itself refuses
        print(f"fake_cluster: cannot install {args.crds}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_stopped(storage, args.port, args.kubeconfig))
    except OSError as exc:
        print(f"fake_cluster: cannot listen on port {args.port}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
