"""Regenerate the committed Python stubs in ``tunery/api/`` from ``proto/api.proto``.

Run ``python proto/generate.py`` after editing the proto. ``tests/tunery/test_api_stubs.py``
calls :func:`generate` into a temporary folder and fails when the committed stubs differ.
Needs the ``dev`` extra (grpcio-tools, mypy-protobuf).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent
DEFAULT_OUT = REPO_ROOT / "tunery" / "api"
PROTO_FILES = ("api.proto",)
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Generate ``*_pb2.py``, ``*_pb2_grpc.py`` and their ``.pyi`` stubs into ``out_dir``.

    Imports between generated modules are rewritten to absolute ``tunery.api`` imports so the
    stubs work from an installed package.
    """
    from grpc_tools import protoc  # imported here: only the dev extra has it

    out_dir.mkdir(parents=True, exist_ok=True)
    plugin = shutil.which("protoc-gen-mypy")
    plugin_grpc = shutil.which("protoc-gen-mypy_grpc")
    if plugin is None or plugin_grpc is None:
        raise SystemExit("protoc-gen-mypy not found: pip install mypy-protobuf")
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_grpc}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTO_FILES,
    ]
    # protoc runs in a process of its own: it forks its plugins, and a fork of a process with
    # gRPC's threads running (the test suite's servers) is not safe
    done = subprocess.run([sys.executable, "-m", *args], check=False)
    if done.returncode != 0:
        raise SystemExit("protoc failed")
    written = sorted(p for p in out_dir.iterdir() if p.name.endswith(_GENERATED_SUFFIXES))
    for path in written:
        text = path.read_text()
        text = re.sub(r"^import (\w+_pb2) as ", r"from tunery.api import \1 as ", text, flags=re.M)
        text = re.sub(r"^import (\w+_pb2)$", r"from tunery.api import \1", text, flags=re.M)
        path.write_text(text)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    for path in generate(ns.out):
        print(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
