"""The dependency direction of design.md, checked on every module's imports (AST, no import).

Kernel (``tunery`` minus ``tunery.cli``/``tunery.sdk``) imports no other project package;
``suggestion`` imports only the kernel; ``earlystop`` and ``metrics_collector`` import the
kernel and ``suggestion`` but never each other; ``controller`` may import all of them but
not the public face; algorithms import no grpc/protobuf/SQL/kubernetes; SQLAlchemy and
Alembic only inside ``tunery.store``; kubernetes/kopf only in the kubernetes runner, the
operator and the SDK's cluster backend.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tunery", "suggestion", "earlystop", "metrics_collector", "controller")
PUBLIC_FACE = ("tunery.cli", "tunery.sdk", "tunery.dashboard", "tunery.visualization")

# package -> project packages it may import
ALLOWED: dict[str, set[str]] = {
    "kernel": {"kernel"},
    "suggestion": {"kernel", "suggestion"},
    "earlystop": {"kernel", "suggestion", "earlystop"},
    "metrics_collector": {"kernel", "suggestion", "metrics_collector"},
    "controller": {"kernel", "suggestion", "earlystop", "metrics_collector", "controller"},
    "face": {"kernel", "suggestion", "earlystop", "metrics_collector", "controller", "face"},
}
KUBERNETES_MODULES = (
    "controller.runners.kubernetes",
    "controller.operator",
    "tunery.sdk.kubernetes",  # the SDK's cluster backend (public face)
)
FORBIDDEN_THIRD_PARTY = {
    "algorithms": (
        *("grpc", "google.protobuf", "sqlalchemy", "kubernetes", "kopf", "tunery.api"),
        *("prometheus_client", "tunery.telemetry", "controller.metrics"),  # metrics stay outside
    ),
}


def _in(module: str, packages: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``packages`` or inside one (by package, not by prefix)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer_of(module: str) -> str | None:
    if module == "tunery" or _in(module, PUBLIC_FACE):
        return "face"  # the package's __init__ re-exports the SDK lazily
    top = module.split(".")[0]
    if top == "tunery":
        return "kernel"
    return top if top in PACKAGES else None


def project_modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def imports_of(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from pkg import name`: name may be a submodule, so judge pkg.name
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


MODULES = project_modules()


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_follow_the_dependency_direction(module: str, path: Path) -> None:
    layer = layer_of(module)
    assert layer is not None
    for name in imports_of(module, path):
        target = layer_of(name)
        if target is not None:
            assert target in ALLOWED[layer], (
                f"{module} ({layer}) must not import {name} ({target})"
            )
        top = name.split(".")[0]
        if top == "sqlalchemy" or top == "alembic":
            assert module.startswith("tunery.store"), (
                f"{module} imports {name} outside tunery.store"
            )
        if top in ("kubernetes", "kopf"):
            assert _in(module, KUBERNETES_MODULES), (
                f"{module} imports {name}: kubernetes only in {', '.join(KUBERNETES_MODULES)}"
            )
        if module.startswith("suggestion.algorithms"):
            bad = [f for f in FORBIDDEN_THIRD_PARTY["algorithms"] if name.startswith(f)]
            assert not bad, f"algorithm module {module} must not import {name}"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from controller import reconcile\nimport sqlalchemy\n")
    names = imports_of("tunery.bad", bad)
    assert "controller.reconcile" in names and "sqlalchemy" in names
    assert layer_of("controller.reconcile") not in ALLOWED["kernel"]


def test_every_package_is_scanned() -> None:
    scanned = {m.split(".")[0] for m, _ in MODULES}
    assert scanned == set(PACKAGES)
