"""Assignment solvers for matching tracks to detections (and predictions to truth): a Hungarian / shortest
augmenting path solver in numpy, run per connected component of the allowed pairs, since the runtime path
has no scipy. The tracker (``tracking.py``) matches with them; ``perception.eval.tracking`` scores with them.
"""

from __future__ import annotations

import numpy as np


def _hungarian(cost: np.ndarray) -> np.ndarray:
    """Min-cost assignment of every row of a finite float64 [n, m] matrix, n <= m, to a distinct column.

    Shortest augmenting paths with row/column potentials (Kuhn-Munkres in the O(n^2 m) form of Jonker and
    Volgenant), the inner loop over columns vectorised. Returns int [n], the column of each row.
    """
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    # Column 0 is a virtual column; p[j] is the 1-based row assigned to column j (0: none).
    p = np.zeros(m + 1, np.intp)
    way = np.zeros(m + 1, np.intp)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = np.flatnonzero(free[1:] & (reduced < minv[1:])) + 1
            minv[better] = reduced[better - 1]
            way[better] = j0
            candidates = np.where(free, minv, np.inf)
            candidates[0] = np.inf
            j1 = int(np.argmin(candidates))
            delta = candidates[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col_of_row = np.empty(n, np.intp)
    cols = np.flatnonzero(p[1:])
    col_of_row[p[cols + 1] - 1] = cols
    return col_of_row


def _solve_rectangular(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost assignment of min(n, m) pairs of a finite float64 [n, m] matrix; rows ascending."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    if n <= m:
        return np.arange(n, dtype=np.intp), _hungarian(cost)
    row_of_col = _hungarian(np.ascontiguousarray(cost.T))
    order = np.argsort(row_of_col)
    return row_of_col[order].astype(np.intp), order.astype(np.intp)


def _as_cost(cost: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {c.shape}")
    return c


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment, the same contract as ``scipy.optimize.linear_sum_assignment``.

    Args:
        cost: float [N, M]; ``+inf`` marks a forbidden pair. NaN and ``-inf`` are errors.

    Returns:
        (rows, cols), int [min(N, M)] each, rows ascending: row ``rows[k]`` goes to column ``cols[k]``; the sum
        of ``cost[rows, cols]`` is minimal over all assignments of min(N, M) pairs.

    Raises:
        ValueError: NaN or ``-inf`` entries, or no assignment of min(N, M) allowed pairs exists.
    """
    c = _as_cost(cost, "cost")
    if np.isnan(c).any() or np.isneginf(c).any():
        raise ValueError("cost matrix contains NaN or -inf")
    if c.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    finite = np.isfinite(c)
    work = c
    if not finite.all():
        if not finite.any():
            raise ValueError("cost matrix is infeasible")
        lo, hi = float(c[finite].min()), float(c[finite].max())
        # One forbidden pair must cost more than any assignment of allowed pairs can save:
        # big + (k - 1) lo > k hi.
        big = hi + min(c.shape) * (hi - lo) + 1.0
        work = np.where(finite, c, big)
    rows, cols = _solve_rectangular(work)
    if not finite[rows, cols].all():
        raise ValueError("cost matrix is infeasible")
    return rows, cols


def _valid_mask(shape: tuple[int, ...], values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    ok = np.isfinite(values)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != shape:
            raise ValueError(f"valid mask shape {v.shape} does not match matrix shape {shape}")
        ok &= v
    return ok


def _components(ok: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Connected components (rows, cols), each ascending, of the bipartite graph of allowed pairs ``ok``.

    Matchings decompose over components (both objectives below are sums over pairs), and in tracking most
    components are a single track and a single detection, which need no solver at all.
    """
    n, m = ok.shape
    row_seen = np.zeros(n, bool)
    col_seen = np.zeros(m, bool)
    comps = []
    for r0 in np.flatnonzero(ok.any(axis=1)).tolist():
        if row_seen[r0]:
            continue
        row_seen[r0] = True
        rows, cols, frontier = [np.array([r0])], [], np.array([r0])
        while frontier.size:
            new_cols = np.flatnonzero(ok[frontier].any(axis=0) & ~col_seen)
            col_seen[new_cols] = True
            cols.append(new_cols)
            frontier = np.flatnonzero(ok[:, new_cols].any(axis=1) & ~row_seen)
            row_seen[frontier] = True
            rows.append(frontier)
        comps.append((np.sort(np.concatenate(rows)), np.sort(np.concatenate(cols))))
    return comps


def _matching(ok: np.ndarray, solve) -> tuple[np.ndarray, np.ndarray]:
    """Run ``solve(rows, cols) -> (rows, cols)`` on every component of ``ok``; pairs sorted by row."""
    # Isolated pairs (a row and a column allowed only with each other) are matched without a solver.
    lone = ok & (ok.sum(axis=1) == 1)[:, None] & (ok.sum(axis=0) == 1)[None, :]
    r_lone, c_lone = np.nonzero(lone)
    pairs_r, pairs_c = [r_lone], [c_lone]
    rest = ok.copy()
    rest[r_lone, :] = False
    for rows, cols in _components(rest):
        r, c = solve(rows, cols)
        pairs_r.append(r)
        pairs_c.append(c)
    rows, cols = np.concatenate(pairs_r).astype(np.intp), np.concatenate(pairs_c).astype(np.intp)
    order = np.argsort(rows)
    return rows[order], cols[order]


def min_cost_matching(cost: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality matching over the allowed pairs, of least total cost among those.

    The rule of CLEAR-MOT evaluation (and of py-motmetrics): as many pairs as possible, then the least
    summed cost.

    Args:
        cost: float [N, M]; non-finite entries are not allowed pairs.
        valid: optional bool [N, M]; False marks a pair that is not allowed.

    Returns:
        (rows, cols), int [K] each, rows ascending, only allowed pairs.
    """
    c = _as_cost(cost, "cost")
    ok = _valid_mask(c.shape, c, valid)

    def solve(r_idx: np.ndarray, c_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sub_ok = ok[np.ix_(r_idx, c_idx)]
        sub = c[np.ix_(r_idx, c_idx)]
        if 1 in sub_ok.shape:  # a star: one pair at most, the cheapest
            k = int(np.argmin(np.where(sub_ok, sub, np.inf)))
            i, j = divmod(k, sub.shape[1])
            return r_idx[[i]], c_idx[[j]]
        lo, hi = float(sub[sub_ok].min()), float(sub[sub_ok].max())
        # A disallowed pair costs more than the whole spread of k allowed ones, so one more allowed pair
        # always wins: (p - q) big > (k - q) (hi - lo) for p > q disallowed pairs.
        big = min(sub.shape) * (hi - lo) + 1.0
        rows, cols = _solve_rectangular(np.where(sub_ok, sub - lo, big))
        keep = sub_ok[rows, cols]
        return r_idx[rows[keep]], c_idx[cols[keep]]

    return _matching(ok, solve)


def max_weight_matching(weight: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Matching over the allowed pairs whose summed weight is largest (pairs may stay unmatched).

    The rule of ByteTrack's gated assignment (``lap.lapjv`` with a cost limit): a strong pair is not given
    up for two weak ones just to match more.

    Args:
        weight: float [N, M], > 0 for useful pairs (a pair of weight <= 0 adds nothing and may be left out);
            non-finite entries are not allowed pairs.
        valid: optional bool [N, M]; False marks a pair that is not allowed.

    Returns:
        (rows, cols), int [K] each, rows ascending, only allowed pairs of positive weight.
    """
    w = _as_cost(weight, "weight")
    ok = _valid_mask(w.shape, w, valid)
    ok &= np.where(ok, w, 0.0) > 0

    def solve(r_idx: np.ndarray, c_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sub_ok = ok[np.ix_(r_idx, c_idx)]
        sub = np.where(sub_ok, w[np.ix_(r_idx, c_idx)], 0.0)
        if 1 in sub_ok.shape:  # a star: one pair at most, the heaviest
            i, j = divmod(int(np.argmax(sub)), sub.shape[1])
            return r_idx[[i]], c_idx[[j]]
        n = r_idx.shape[0]
        # Every row may also take its own zero-cost "unmatched" column.
        rows, cols = _solve_rectangular(np.concatenate([-sub, np.zeros((n, n))], axis=1))
        real = cols < c_idx.shape[0]
        rows, cols = rows[real], cols[real]
        keep = sub_ok[rows, cols]
        return r_idx[rows[keep]], c_idx[cols[keep]]

    return _matching(ok, solve)
