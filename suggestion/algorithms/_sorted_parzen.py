"""Univariate TPE's "above" (bad) mixture from coordinates kept sorted across requests.

Called by :func:`suggestion.algorithms._parzen.tpe_suggest` when ``tpe`` (univariate, on an
unconditional space) passes its :class:`SortedColumns` and the bad mixture is long
(``SORTED_FROM`` kernels; shorter ones are built as before); the columns live in the
algorithm instance, which the suggestion service keeps per experiment in a bounded LRU.

At a long history almost every completed trial is in the bad group, and that mixture is what
a request costs: sorting each coordinate's centres for the neighbour bandwidths, and the sum
over all kernels at every candidate. Here:

- :class:`SortedColumns` keeps each numeric coordinate of the completed trials sorted, ties
  by trial order. A request whose completed trials are the previous ones plus new ones (the
  history only grows; a pending trial that completes is inserted where it belongs) inserts
  the new values by binary search; any other change (a trial removed, reordered or with a
  different assignment, another replica's history) rebuilds the columns from the request.
  The check is exact (every kept row is compared) and O(n) in C.
- :class:`SortedParzen` takes the columns, drops the good group, inserts pending trials and
  the batch's earlier picks, and builds the same mixture as
  :class:`~suggestion.algorithms._parzen.ParzenEstimator` would for those points (same prior
  kernel, neighbour bandwidths with the magic clip, recency weights, unit-interval masses),
  held in sorted order. Tied centres share bandwidths in trial order (ParzenEstimator's order
  for ties is numpy's quicksort's, as optuna's is).
- Densities at a candidate sum only the kernels within a window of sorted centres: a kernel
  farther than ``sigma * sqrt(2 T)`` contributes less than ``exp(-T)`` of its coefficient,
  and ``T`` is chosen per candidate so that, with the coefficients' sum bounded, everything
  left out is below ``1e-17`` of the prior kernel's own term there (so of the density): the
  sum equals the full one to rounding. The few kernels wider than ``_NARROW`` minimum
  widths are summed in full. Each coordinate is scored on its own, so its windows stay in
  cache.

The result is a pure function of the history: a cold instance and a warm one give the same
densities, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from scipy.special import ndtr

from suggestion.algorithms._encoding import Dim
from suggestion.algorithms._parzen import (
    _EXP_FLOOR,
    _LOG_SQRT_2PI,
    _Z_CAP,
    SORTED_FROM,
    Candidates,
    _categorical_kernels,
    default_weights,
    sorted_bandwidths,
)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LOG_INV_DROP = math.log(1e17)  # what a window leaves out is below 1e-17 of the density
_NARROW = 2.0  # kernels up to this many minimum widths are windowed, wider ones summed in full
_PRIOR_MASS = float(ndtr(0.5) - ndtr(-0.5))  # the prior kernel's (centre 0.5, width 1) on [0, 1]


class SortedColumns:
    """The numeric coordinates of the completed trials, each sorted, kept across requests.

    ``values[i]`` is numeric coordinate ``i`` of every completed row in ascending order (ties
    by row), ``ids[i]`` the completed row (index into ``x_completed``) of each entry.
    Not thread-safe: the service serialises an experiment's requests.
    """

    def __init__(self) -> None:
        self.values = np.empty((0, 0))
        self.ids = np.empty((0, 0), dtype=np.intp)
        self.rebuilds = 0  # how often the columns were built from scratch (tests read it)
        self._rows = np.empty(0, dtype=np.intp)  # each completed row's index among the trials
        self._x = np.empty((0, 0))  # the rows as last seen, to verify them

    def update(self, rows: np.ndarray, x: np.ndarray) -> None:
        """Bring the columns up to date with the completed rows ``x`` (n, m), whose indices
        among the request's trials are ``rows`` (ascending)."""
        if not self._extend(rows, x):
            self._rebuild(x)
        self._rows, self._x = rows, x

    def _extend(self, rows: np.ndarray, x: np.ndarray) -> bool:
        """Insert the new rows if every previous row is still there, unchanged."""
        old_rows = self._rows
        n_old = len(old_rows)
        if n_old == 0 or x.shape[1] != self._x.shape[1] or len(rows) < n_old:
            return False
        if np.array_equal(rows[:n_old], old_rows):  # the usual case: new rows at the end
            pos = None
            if not np.array_equal(x[:n_old], self._x):
                return False
            new = np.arange(n_old, len(rows))
        else:  # a pending trial completed: its row lands among the previous ones
            pos = np.searchsorted(rows, old_rows)  # where each previous row is now
            if pos[-1] >= len(rows) or not np.array_equal(rows[pos], old_rows):
                return False
            if not np.array_equal(x[pos], self._x):
                return False
            fresh = np.ones(len(rows), dtype=bool)
            fresh[pos] = False
            new = np.flatnonzero(fresh)
        if not len(new):
            return True
        ids = self.ids if pos is None else pos[self.ids]  # completed indices move up
        m = x.shape[1]
        at = np.empty((m, len(new)), dtype=np.intp)
        vals = np.empty((m, len(new)))
        who = np.empty((m, len(new)), dtype=np.intp)
        for i in range(m):
            v = x[new, i]
            order = np.argsort(v, kind="stable")  # ties: the earlier row first
            v, r = v[order], new[order]
            col, col_ids = self.values[i], ids[i]
            lo = np.searchsorted(col, v, side="left")
            hi = np.searchsorted(col, v, side="right")
            for k in np.flatnonzero(hi > lo):  # equal values: place by row among them
                lo[k] += np.searchsorted(col_ids[lo[k] : hi[k]], r[k])
            at[i] = lo + i * n_old
            vals[i], who[i] = v, r
        self.values = _insert(self.values, at.ravel(), vals.ravel())
        self.ids = _insert(ids, at.ravel(), who.ravel())
        return True

    def mixture(
        self,
        dims: Sequence[Dim],
        x: np.ndarray,
        below: np.ndarray,
        extra: np.ndarray,
        *,
        prior_weight: float,
    ) -> SortedParzen:
        """The bad mixture: the completed rows ``x`` (every coordinate; their numeric ones
        as last passed to :meth:`update`) outside the ``below`` mask, then the ``extra``
        points (see :class:`SortedParzen`)."""
        return SortedParzen(self, dims, x, below, extra, prior_weight=prior_weight)

    def _rebuild(self, x: np.ndarray) -> None:
        self.rebuilds += 1
        cols = x.T
        order = np.argsort(cols, axis=1)
        values = np.take_along_axis(cols, order, axis=1)
        tied = np.flatnonzero((values[:, 1:] == values[:, :-1]).any(axis=1))
        for i in tied:  # quicksort leaves ties in any order: put them in row order
            order[i] = np.lexsort((np.arange(len(cols[i])), cols[i]))
            values[i] = cols[i][order[i]]
        self.values, self.ids = values, order


class SortedParzen:
    """The mixture of the completed rows outside ``below`` followed by ``extra`` points (in
    that order for the recency weights), as :class:`ParzenEstimator` builds it univariately,
    from ``columns`` already updated with ``x`` (n, d). Scores only
    (:meth:`log_density_per_dim`); the good mixture is the one sampled.

    The numeric kernels are (m, K) arrays, each row sorted by centre; the prior kernel is
    kept apart. In a long mixture, the kernels up to ``_NARROW`` minimum widths are summed
    over windows, the few wider ones in full.
    """

    def __init__(
        self,
        columns: SortedColumns,
        dims: Sequence[Dim],
        x: np.ndarray,
        below: np.ndarray,
        extra: np.ndarray,
        *,
        prior_weight: float,
    ) -> None:
        self.dims = dims
        self.numeric = [j for j, d in enumerate(dims) if not d.is_list]
        above = ~below
        n_above = int(above.sum())
        n_kernels = n_above + len(extra) + 1
        weights = np.append(default_weights(n_kernels - 1), prior_weight)
        self.weights = weights / weights.sum()
        self.probs = {}
        if len(self.numeric) < len(dims):  # categorical kernels, in kernel order
            points = np.vstack([x[above], extra])
            self.probs = {
                j: _categorical_kernels(d, points[:, j], prior_weight)
                for j, d in enumerate(dims)
                if d.is_list
            }
        self.prior = self.weights[-1] / _PRIOR_MASS  # times the prior kernel's density
        if not self.numeric:
            return
        m = len(self.numeric)
        keep = above[columns.ids]
        mus = columns.values[keep].reshape(m, n_above)
        slot = np.cumsum(above) - 1  # a completed row's place among the above rows
        kernel = slot[columns.ids[keep]].reshape(m, n_above)
        if len(extra):
            mus, kernel = _insert_extra(mus, kernel, extra[:, self.numeric], n_above)
        min_sigma = 1.0 / min(100.0, 1.0 + n_kernels)  # as ParzenEstimator
        sigmas = _bandwidths(mus, min_sigma)
        self.mus, self.sigmas = mus, sigmas  # (m, K) sorted, the prior kernel apart
        self._kernel = kernel
        self._mass = _unit_mass(mus, sigmas)
        self.windowed = n_kernels >= SORTED_FROM
        if not self.windowed:
            return
        # At most 1 / (_NARROW min_sigma) gaps are that wide: the wide kernels are few.
        self._narrow = narrow = sigmas <= _NARROW * min_sigma
        if narrow.all():
            self.wide: list[np.ndarray | None] = [None] * m
            self.reach_sigma = sigmas.max(axis=1)  # the widest narrow kernel
            self.uniform = self.reach_sigma == sigmas.min(axis=1)
        else:
            self.wide = [None if row.all() else np.flatnonzero(~row) for row in narrow]
            self.reach_sigma = np.where(narrow, sigmas, 0.0).max(axis=1)
            self.uniform = self.reach_sigma == np.where(narrow, sigmas, np.inf).min(axis=1)
        # What a row's narrow kernels sum to at most, per unit of density and of mass: the
        # weights sum to at most 1, the widths are at least min_sigma, and a kernel of width
        # at most 2 min_sigma (0.02) centred in [0, 1] has at least half its mass there.
        self.density_bound = 2.0 * _INV_SQRT_2PI / min_sigma
        self.mass_bound = 2.0
        # Narrow terms are exp(log_coef - t^2), t = (u - mu) * scale. In a row whose narrow
        # kernels share one width (long histories: the clip), t = u * scale - mu * scale
        # with the scaled centres precomputed, so a window needs no scales.
        self.row_scale = math.sqrt(0.5) / self.reach_sigma
        self.scaled_mus = mus * self.row_scale[:, None]
        log_coef = np.log(self.weights)[kernel]
        log_coef -= np.log(self._mass)
        for r in range(m):
            log_coef[r] -= _LOG_SQRT_2PI + np.log(
                self.reach_sigma[r] if self.uniform[r] else sigmas[r]
            )
        if not narrow.all():
            log_coef[~narrow] = -np.inf  # summed apart
        self.log_coef = log_coef

    @cached_property
    def coef(self) -> np.ndarray:
        """(m, K) each kernel's weight per unit of density (weight / (sigma sqrt(2 pi) mass))."""
        return self.weights[self._kernel] * _INV_SQRT_2PI / (self.sigmas * self._mass)

    @cached_property
    def mass_coef(self) -> np.ndarray:
        """(m, K) each kernel's weight per unit of mass on [0, 1]."""
        return self.weights[self._kernel] / self._mass

    @cached_property
    def narrow_mass_coef(self) -> np.ndarray:
        """:attr:`mass_coef`, 0 for the wide kernels (summed apart)."""
        return np.where(self._narrow, self.mass_coef, 0.0)

    @cached_property
    def scale(self) -> np.ndarray:
        """(m, K) sqrt(1/2) / sigma: a point's t is (u - mu) * scale."""
        return math.sqrt(0.5) / self.sigmas

    def log_density_per_dim(self, cand: Candidates) -> np.ndarray:
        """(c, d) log density of each coordinate's mixture at the candidates."""
        out = np.empty(cand.u.shape)
        points = [i for i, j in enumerate(self.numeric) if j not in cand.cells]
        if points:
            cols = [self.numeric[i] for i in points]
            out[:, cols] = np.log(self._point_densities(points, cand.u[:, cols].T)).T
        for i, j in enumerate(self.numeric):
            if j in cand.cells:
                out[:, j] = np.log(self._cell_mass(i, *cand.cells[j]))
        for j, probs in self.probs.items():
            out[:, j] = np.log((self.weights @ probs)[cand.categories[j]])
        return out

    def _point_densities(self, rows: list[int], u: np.ndarray) -> np.ndarray:
        """(len(rows), c) mixture densities of numeric rows ``rows`` at ``u`` (same shape),
        one coordinate at a time (its windows stay in cache)."""
        prior = self.prior * _INV_SQRT_2PI * np.exp(-0.5 * np.square(u - 0.5))
        out = prior.copy()
        for a, r in enumerate(rows):
            window = self._window(r, u[a], u[a], prior[a]) if self.windowed else None
            if window is None:
                out[a] += _gauss(u[a, :, None], self.mus[r], self.scale[r]) @ self.coef[r]
                continue
            first, width = window
            if self.uniform[r]:
                t = _windows_of(self.scaled_mus[r], width)[first]
                np.subtract((u[a] * self.row_scale[r])[:, None], t, out=t)
            else:
                t = _windows_of(self.mus[r], width)[first]
                np.subtract(u[a][:, None], t, out=t)
                t *= _windows_of(self.scale[r], width)[first]
            np.square(t, out=t)
            np.minimum(t, -_EXP_FLOOR, out=t)  # exp() of underflows is ~5x slower
            terms = _windows_of(self.log_coef[r], width)[first]
            np.subtract(terms, t, out=terms)
            np.exp(terms, out=terms)
            out[a] += terms.sum(axis=1)
            if (wide := self.wide[r]) is not None:
                mus, scale = self.mus[r][wide], self.scale[r][wide]
                out[a] += _gauss(u[a, :, None], mus, scale) @ self.coef[r][wide]
        return out

    def _cell_mass(self, i: int, lo_u: np.ndarray, hi_u: np.ndarray) -> np.ndarray:
        """Mixture mass of numeric row ``i`` on the cells ``[lo_u, hi_u]``."""
        mus, sigmas, coef = self.mus[i], self.sigmas[i], self.mass_coef[i]
        prior = self.prior * _kernel_mass(lo_u, hi_u, np.float64(0.5), np.float64(1.0))
        lo, hi = lo_u[:, None], hi_u[:, None]
        window = self._window(i, lo_u, hi_u, prior, mass=True) if self.windowed else None
        if window is None:
            return _kernel_mass(lo, hi, mus, sigmas) @ coef + prior
        first, width = window
        mass = _kernel_mass(
            lo, hi, _windows_of(mus, width)[first], _windows_of(sigmas, width)[first]
        )
        narrow_coef = _windows_of(self.narrow_mass_coef[i], width)[first]
        total = np.einsum("ck,ck->c", mass, narrow_coef) + prior
        if (wide := self.wide[i]) is not None:
            total += _kernel_mass(lo, hi, mus[wide], sigmas[wide]) @ coef[wide]
        return total

    def _window(
        self, r: int, lo_u: np.ndarray, hi_u: np.ndarray, prior: np.ndarray, mass: bool = False
    ) -> tuple[np.ndarray, int] | None:
        """Where to sum the narrow kernels of row ``r`` for candidates ``[lo_u, hi_u]``
        whose prior-kernel terms are ``prior``: per candidate, the ``width`` kernels from
        ``first`` hold every narrow kernel whose centre lies within reach (and some farther
        ones). None: windows that wide save nothing."""
        bound = self.mass_bound if mass else self.density_bound
        with np.errstate(divide="ignore"):  # a cell of no width: no window
            depth = np.log(bound / prior) + _LOG_INV_DROP
        reach = self.reach_sigma[r] * np.sqrt(2.0 * np.maximum(depth, 0.0))
        mus = self.mus[r]
        first = np.searchsorted(mus, lo_u - reach, side="left")
        width = int((np.searchsorted(mus, hi_u + reach, side="right") - first).max(initial=0))
        if width * 2 > len(mus):
            return None
        return np.minimum(first, len(mus) - width), width  # full windows inside the row


def _windows_of(a: np.ndarray, width: int) -> np.ndarray:
    """Every ``width``-long window of the contiguous 1-D ``a``, as rows of a view (row i
    starts at ``a[i]``); indexing it with an array of starts copies those windows."""
    return np.ndarray((len(a) - width + 1, width), dtype=a.dtype, buffer=a, strides=a.strides * 2)


def _gauss(u: np.ndarray, mus: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """exp(-((u - mus) * scale)^2), broadcast, exponents floored (see _EXP_FLOOR)."""
    t = np.square((u - mus) * scale)
    np.minimum(t, -_EXP_FLOOR, out=t)
    np.negative(t, out=t)
    return np.exp(t, out=t)


def _insert(rows: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(m, n) ``rows`` with ``values`` inserted before the flat positions ``at``
    (ascending; ``i * n + n`` is the end of row ``i``), each row gaining as many; a few
    contiguous copies (np.insert's masked copy is several times slower)."""
    m = rows.shape[0]
    flat = rows.reshape(-1)
    if len(at) > 64:  # many: one masked copy beats many small ones
        return np.insert(flat, at, values).reshape(m, -1)
    pieces = []
    start = 0
    for where, value in zip(at.tolist(), values, strict=True):
        pieces += [flat[start:where], value[None]]
        start = where
    pieces.append(flat[start:])
    return np.concatenate(pieces).reshape(m, -1)


def _insert_extra(
    mus: np.ndarray, kernel: np.ndarray, extra: np.ndarray, first_kernel: int
) -> tuple[np.ndarray, np.ndarray]:
    """Insert ``extra`` (e, m) points, kernels ``first_kernel, ...``, into the sorted rows;
    they follow every completed row, so they go after equal values, in their own order."""
    m, n = mus.shape
    e = len(extra)
    at = np.empty((m, e), dtype=np.intp)
    vals = np.empty((m, e))
    who = np.empty((m, e), dtype=np.intp)
    for i in range(m):
        order = np.argsort(extra[:, i], kind="stable")
        vals[i] = extra[order, i]
        who[i] = first_kernel + order
        at[i] = np.searchsorted(mus[i], vals[i], side="right") + i * n
    mus = _insert(mus, at.ravel(), vals.ravel())
    kernel = _insert(kernel, at.ravel(), who.ravel())
    return mus, kernel


def _bandwidths(mus: np.ndarray, min_sigma: float) -> np.ndarray:
    """:func:`sorted_bandwidths` clipped to [min_sigma, 1], in three passes: with two
    centres or more, the cube's ends never decide (a gap to an end is never the farther
    neighbour of an end kernel), and no gap exceeds 1."""
    if mus.shape[1] < 2:
        return np.clip(sorted_bandwidths(mus), min_sigma, 1.0)
    gaps = np.diff(mus, axis=1)
    out = np.empty_like(mus)
    np.maximum(gaps[:, :-1], gaps[:, 1:], out=out[:, 1:-1])
    out[:, 0], out[:, -1] = gaps[:, 0], gaps[:, -1]
    return np.maximum(out, min_sigma, out=out)


def _unit_mass(mus: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Each kernel's mass on [0, 1]: ``ndtr((1 - mu) / sigma) - ndtr(-mu / sigma)``, where a
    side more than 8 widths away counts as 1 (or 0). Rows are sorted, so the kernels near
    an end are among a prefix and a suffix of each row; most kernels are well inside."""
    out = np.ones_like(mus)
    reach = 8.0 * sigmas.max(axis=1, initial=0.0)
    for i, (row, sig) in enumerate(zip(mus, sigmas, strict=True)):
        head = int(np.searchsorted(row, reach[i], side="left"))  # row[head:] >= 8 sigma
        tail = int(np.searchsorted(row, 1.0 - reach[i], side="right"))  # row[:tail] far
        upper = slice(tail, None)
        near = 1.0 - row[upper] < 8.0 * sig[upper]
        out[i, upper][near] = ndtr((1.0 - row[upper][near]) / sig[upper][near])
        lower = slice(None, head)
        near = row[lower] < 8.0 * sig[lower]
        out[i, lower][near] -= ndtr(-row[lower][near] / sig[lower][near])
    return out


def _kernel_mass(
    lo_u: np.ndarray, hi_u: np.ndarray, mus: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Each kernel's (unnormalised) mass on the cells [lo_u, hi_u] (broadcast)."""
    lo = np.clip((lo_u - mus) / sigmas, -_Z_CAP, _Z_CAP)
    hi = np.clip((hi_u - mus) / sigmas, -_Z_CAP, _Z_CAP)
    flip = lo > 0  # use the upper tail where it is the accurate one
    return np.where(flip, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
