"""Do two trees propose the same points? The check behind a speed-up that must not change an
algorithm's output (docs/benchmarks.md, "Long histories").

Runs ``tpe`` and ``bayesianoptimization`` in-process, as the suggestion service calls them
(one instance per experiment, the whole history in every request), on Hartmann6: from scratch,
and after a prefill of random completed trials (a long history), in this tree and, in a
subprocess, in ``--baseline-root``; prints how many proposals differ (exit status 1 if any).

Usage::

    git archive <commit> | tar -x -C /tmp/base
    python tools/same_proposals.py --baseline-root /tmp/base
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CASES = {  # algorithm -> (seed, prefill, steps)
    "tpe": ((0, 0, 120), (1, 0, 120), (2, 3000, 15)),
    "bayesianoptimization": ((0, 0, 25), (1, 600, 8)),
}


def proposals(algorithm: str) -> list[list[float]]:
    """Every proposal of the cases of ``algorithm``, in order (this tree's code)."""
    import numpy as np

    from bench.problems import hartmann6
    from suggestion.algorithms import get_algorithm
    from suggestion.algorithms.base import SuggestRequest, parse_settings
    from tunery.space import Parameter, SearchSpace
    from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

    space = SearchSpace(tuple(Parameter.double(f"x{i}", 0.0, 1.0) for i in range(6)))
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    out = []
    for seed, prefill, steps in CASES[algorithm]:
        cls = get_algorithm(algorithm)
        algo = cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, algorithm))
        rng = np.random.default_rng(seed)
        trials = []
        for i, point in enumerate(rng.random((prefill, 6)).tolist()):
            a = {f"x{j}": v for j, v in enumerate(point)}
            trials.append(TrialResult(f"p{i}", a, TrialCondition.SUCCEEDED, hartmann6(a)))
        for i in range(steps):
            request = SuggestRequest(space, objective, trials, 1, experiment_name="same")
            [a] = algo.suggest(request)
            trials.append(TrialResult(f"s{i}", a, TrialCondition.SUCCEEDED, hartmann6(a)))
            out.append([a[f"x{j}"] for j in range(6)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-root", type=Path, help="the other tree")
    parser.add_argument("--algorithms", default=",".join(CASES))
    parser.add_argument("--print-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    algorithms = [a for a in args.algorithms.split(",") if a]
    if args.print_json:  # the subprocess side
        json.dump({a: proposals(a) for a in algorithms}, sys.stdout)
        return
    if args.baseline_root is None:
        parser.error("--baseline-root is required")
    sys.path.insert(0, str(ROOT))  # this tree's code, whatever is installed
    root = args.baseline_root.resolve()
    env = dict(os.environ, PYTHONPATH=str(root))
    command = [sys.executable, str(Path(__file__).resolve()), "--print-json"]
    command += ["--algorithms", ",".join(algorithms)]
    theirs = json.loads(
        subprocess.run(
            command,
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    differ = 0
    for algorithm in algorithms:
        ours = proposals(algorithm)
        diff = sum(a != b for a, b in zip(ours, theirs[algorithm], strict=True))
        differ += diff
        print(f"{algorithm}: {len(ours)} proposals, {diff} differ from {root}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
