"""Cost of validating hostile Experiment documents: wall time and peak RSS per shape.

Issue 14's bar: any document up to 10 MB is validated (accepted or refused with a clear error)
in at most 5 s and 500 MB of resident memory. Each shape below is written to a file of about
``--mb`` megabytes (the small alias bomb excepted) and validated by a fresh interpreter exactly
as ``tunery validate`` does (``controller.settings_check.load_checked`` on the path), so the
peak RSS includes the interpreter and its imports; the ``baseline`` row validates the
quickstart example for comparison. Shapes:

- ``wide-list``: one categorical parameter whose list holds millions of values;
- ``many-parameters``: tens of thousands of parameters;
- ``8k-parameters``: 8,000 distinct parameters, under the value limit (a valid document);
- ``deep-nesting``: ``[[[[...]]]]`` in a trialSpec field;
- ``alias-bomb``: about 350 bytes of anchors whose aliases expand to 9^9 (387 million) values;
- ``long-string``: one annotation holding a 10 MB string (a valid document);
- ``many-strings``: 100 annotations of 100 KB each (a valid document);
- ``comments``: the quickstart followed by 10 MB of comment lines (a valid document);
- ``at-the-limit``: 49,000 annotations, just under the value limit (a valid document);
- ``huge-int``: maxTrialCount written with 10 million digits;
- ``grid-tiny-step``: grid search over a double with step 1e-12 (small file).

Usage::

    python -m bench.validate_cost             # 10 MB documents, 3 runs each (median)
    python -m bench.validate_cost --mb 1 --repeat 1
    python -m bench.validate_cost --markdown  # the table as Markdown (docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "examples" / "quickstart" / "experiment.yaml").read_text()
_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from controller.settings_check import load_checked
from tunery.experiment import ExperimentError
t1 = time.perf_counter()
try:
    load_checked(__import__("pathlib").Path(sys.argv[1]))
    outcome = "valid"
except ExperimentError as exc:
    outcome = str(exc.errors[0])[:90]
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": t2 - t1, "peak_mb": peak, "outcome": outcome}))
"""


def _fill(prefix: str, item: str, suffix: str, size: int) -> str:
    count = max(1, (size - len(prefix) - len(suffix)) // len(item))
    return prefix + item * count + suffix


def _wide_list(size: int) -> str:
    head = QUICKSTART.replace(
        "  parameters:\n",
        "  parameters:\n    - name: c\n      parameterType: categorical\n"
        "      feasibleSpace:\n        list:\n",
        1,
    )
    cut = head.index("    - name: lr")
    return _fill(head[:cut], '          - "v"\n', head[cut:], size)


def _many_parameters(size: int) -> str:
    cut = QUICKSTART.index("    - name: lr")
    item = (
        "    - name: p\n      parameterType: double\n      feasibleSpace: "
        '{min: "0.1", max: "0.2"}\n'
    )
    return _fill(QUICKSTART[:cut], item, QUICKSTART[cut:], size)


def _valid_parameters(_size: int) -> str:
    cut = QUICKSTART.index("    - name: lr")
    items = "".join(
        f"    - name: p{i}\n      parameterType: double\n      feasibleSpace: "
        '{min: "0.1", max: "0.2"}\n'
        for i in range(8_000)
    )
    return QUICKSTART[:cut] + items + QUICKSTART[cut:]


def _deep(size: int) -> str:
    half = (size - len(QUICKSTART)) // 2
    return QUICKSTART + "extra: " + "[" * half + "]" * half + "\n"


def _alias_bomb(_size: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
        previous = name
    return QUICKSTART + "\n".join(lines) + "\n"


def _annotation(value: str, count: int = 1) -> str:
    notes = "".join(f"    note{i}: {value}\n" for i in range(count))
    return QUICKSTART.replace(
        "  name: quickstart\n", f"  name: quickstart\n  annotations:\n{notes}", 1
    )


def _long_string(size: int) -> str:
    return _annotation("x" * (size - len(QUICKSTART) - 40))


def _many_strings(size: int) -> str:
    return _annotation("y" * ((size - len(QUICKSTART)) // 100 - 20), 100)


def _comments(size: int) -> str:
    return _fill(QUICKSTART, "# a comment line of some forty characters\n", "", size)


def _at_the_limit(_size: int) -> str:
    return _annotation("v", 49_000)


def _huge_int(size: int) -> str:
    return QUICKSTART.replace(
        "maxTrialCount: 12", "maxTrialCount: " + "9" * (size - len(QUICKSTART)), 1
    )


def _grid(_size: int) -> str:
    return QUICKSTART.replace("algorithmName: random", "algorithmName: grid").replace(
        "distribution: logUniform", 'step: "1e-12"'
    )


SHAPES: dict[str, Callable[[int], str]] = {
    "baseline": lambda _size: QUICKSTART,
    "wide-list": _wide_list,
    "many-parameters": _many_parameters,
    "8k-parameters": _valid_parameters,
    "deep-nesting": _deep,
    "alias-bomb": _alias_bomb,
    "long-string": _long_string,
    "many-strings": _many_strings,
    "comments": _comments,
    "at-the-limit": _at_the_limit,
    "huge-int": _huge_int,
    "grid-tiny-step": _grid,
}


def measure(path: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode != 0:
        return {"seconds": float("nan"), "peak_mb": float("nan"), "outcome": result.stderr[-200:]}
    data: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="document size (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per shape (median)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    size = int(args.mb * 1_000_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SHAPES.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(make(size), encoding="utf-8")
            runs = [measure(path) for _ in range(args.repeat)]
            seconds = statistics.median(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
            peak = max(float(r["peak_mb"]) for r in runs)  # type: ignore[arg-type]
            rows.append((name, path.stat().st_size, seconds, peak, str(runs[0]["outcome"])))
    if args.markdown:
        print("| shape | bytes | seconds (median) | peak RSS MB | outcome |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name, nbytes, seconds, peak, outcome in rows:
            cell = outcome.replace("|", "\\|")
            print(f"| {name} | {nbytes:,} | {seconds:.2f} | {peak:.0f} | {cell} |")
        return
    print(f"{'shape':16} {'bytes':>12} {'seconds':>8} {'peak MB':>8}  outcome")
    for name, nbytes, seconds, peak, outcome in rows:
        print(f"{name:16} {nbytes:>12,} {seconds:>8.2f} {peak:>8.0f}  {outcome}")
    worst_s = max(r[2] for r in rows)
    worst_mb = max(r[3] for r in rows)
    print(f"worst: {worst_s:.2f} s, {worst_mb:.0f} MB (bars: 5 s, 500 MB)")


if __name__ == "__main__":
    main()
