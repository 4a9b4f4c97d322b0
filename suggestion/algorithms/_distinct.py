"""Distinct proposals: the one place where suggestions are de-duplicated against the history
and each other, and where a finite space is declared exhausted.

Called by the algorithm modules with their own proposal sampler; falls back to the prior
(uniform on the unit cube) and, for finite spaces, to enumerating the unused points.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import numpy as np

from suggestion.algorithms._encoding import Key, SpaceEncoding
from suggestion.algorithms.base import SpaceExhaustedError, SuggestRequest
from tunery.space import Assignment

ENUMERATION_LIMIT = 200_000
"""Largest finite space that :func:`fill_distinct` enumerates in full when random proposals
fail (larger ones are walked in grid order up to the first unused points)."""


def request_rng(seed: int, request: SuggestRequest, *salt: int) -> np.random.Generator:
    """The RNG of one request: a pure function of the seed and the number of trials so far.

    Not of the requested count, so a batch starts with what a single suggestion would have
    been (the proposals are drawn in the same order).
    """
    return np.random.default_rng([seed, len(request.trials), *salt])


def indexed_prior(
    encoding: SpaceEncoding, count: int, seen: Collection[Key], seed: int, first_index: int
) -> list[Assignment]:
    """``count`` distinct draws from the prior for the trials ``first_index``,
    ``first_index + 1``, ...: the k-th from a generator seeded by ``(seed, first_index + k)``.

    A startup suggestion so depends only on the seed and the trial's index, not on how the
    trials were batched into requests (which varies with timing when trials run in
    parallel). At one trial per request this is exactly :func:`request_rng`'s draw. Only a
    draw that repeats an existing trial is redrawn, from the same generator.

    Raises:
        SpaceExhaustedError: a finite space has fewer unused points than requested.
    """
    out: list[Assignment] = []
    for k in range(count):
        rng = np.random.default_rng([seed, first_index + k])
        out = fill_distinct(encoding, len(out) + 1, seen, rng, chosen=out)
    return out


def fill_distinct(
    encoding: SpaceEncoding,
    count: int,
    seen: Collection[Key],
    rng: np.random.Generator,
    chosen: list[Assignment] | None = None,
    propose: Callable[[int], Iterable[Sequence[float] | np.ndarray]] | None = None,
    rounds: int = 16,
) -> list[Assignment]:
    """Complete ``chosen`` to ``count`` assignments distinct from ``seen`` and each other.

    Proposals come first from ``propose(n)`` (unit-cube points, the algorithm's own sampler),
    then from uniform sampling of the unit cube (the prior), and finally, for a finite space,
    from enumerating the feasible points not yet used.

    Raises:
        SpaceExhaustedError: a finite space has fewer unused points than requested.
    """
    out = list(chosen or [])
    taken = {encoding.key(a) for a in out}
    d = len(encoding)

    def offer(points: Iterable[Sequence[float] | np.ndarray]) -> None:
        for u in points:
            if len(out) >= count:
                return
            a = encoding.decode(u)
            k = encoding.key(a)
            if k in seen or k in taken:
                continue
            taken.add(k)
            out.append(a)

    if encoding.size is not None and encoding.size - len(seen) < count:
        rounds = 0  # almost certainly exhausted: go straight to enumeration
    sources: list[Callable[[int], Iterable[Sequence[float] | np.ndarray]]] = []
    if propose is not None:
        sources.append(propose)
    sources.append(lambda n: rng.random((n, d)))
    for source in sources:
        for _ in range(rounds):
            if len(out) >= count:
                return out
            offer(source(max(2 * (count - len(out)), 8)))
    if len(out) >= count:
        return out
    if encoding.size is None:  # continuous: collisions this persistent mean a bug
        raise SpaceExhaustedError(
            f"could not find {count} distinct assignments after {2 * rounds} rounds"
        )
    return _enumerate_rest(encoding, count, seen, rng, out, taken)


def _enumerate_rest(
    encoding: SpaceEncoding,
    count: int,
    seen: Collection[Key],
    rng: np.random.Generator,
    out: list[Assignment],
    taken: set[Key],
) -> list[Assignment]:
    assert encoding.size is not None
    space = encoding.space
    free: list[Assignment] = []
    need = count - len(out)
    for a in space.grid():
        k = encoding.key(a)
        if k in seen or k in taken:
            continue
        free.append(a)
        if encoding.size > ENUMERATION_LIMIT and len(free) >= need:
            break
    if len(free) < need:
        used = encoding.size - len(free) - len(out)
        raise SpaceExhaustedError(
            f"the search space is exhausted: it has {encoding.size} distinct assignments, "
            f"{used} are already used by trials and {len(out) + len(free)} remain, but "
            f"{count} were requested"
        )
    picks = rng.choice(len(free), size=need, replace=False)
    out.extend(free[int(i)] for i in sorted(picks))
    return out
