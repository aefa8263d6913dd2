"""Multi-object tracking by detection: ByteTrack association, a time-aware Kalman filter, assignment solvers.

The tracker follows ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box", ECCV 2022): every detection box is used, the confident ones to find and start tracks and the
weak ones (which are often occluded or blurred objects) only to keep existing tracks alive. Boxes are in
*frame pixels* (x1, y1, x2, y2, x right, y down) and times in seconds throughout.

Differences from the reference implementation, all deliberate:

- The Kalman filter runs in continuous time: frames may arrive at 10 or 25 fps or with gaps (a live camera
  drops frames), so prediction uses the real interval ``dt`` between timestamps and the process noise grows
  with ``dt``; the reference noise levels are those of ByteTrack / DeepSORT at :data:`REF_FPS`.
- The state holds the box width, not its aspect ratio (as BoT-SORT does), so zero-height boxes are fine;
  the noise of x and w scales with the box width, that of y and h with its height.
- Track ids are handed out when a track is confirmed, so tentative tracks that die (single-frame false
  positives) use up no ids: ids are 1, 2, 3, ... in order of confirmation and never reused.
- Lost tracks are removed after ``max_lost_s`` seconds without a match, not after a number of frames.
- Optionally (on by default) a lost track can also be found again by its last matched box (OC-SORT).
- Optionally (on by default) a last, tolerant association for small boxes: IoU is fragile for boxes a few
  pixels wide (a distant car, sign or pedestrian moves by its own width in one frame, and its visible extent
  changes by whole pixels under partial occlusion), so confirmed tracks still unmatched may take a leftover
  detection by the IoU of boxes padded by ``pad_px`` pixels on every side, when the two are each other's best
  padded match (the buffered IoU of C-BIoU, Yang et al., WACV 2023, with a constant buffer in pixels).
- ``class_aware``: a detection only matches a track of the same label.
- Optionally (on by default) duplicate tracks are merged: a detector that boxes one object two ways (a van
  whole and its lower body, boxes whose IoU is just below the NMS threshold) starts two tracks, and when
  only one of the boxes comes in a frame the two tracks take turns on the object, each turn an id switch.
  A confirmed track unmatched in a frame whose box lies mostly inside a matched track's box, standing on
  the same ground line and moving with it, is the same object: the two become one track with the older id.

The assignment solvers (a Hungarian / shortest augmenting path solver in numpy, run per connected component
of the allowed pairs) live here as well, since the runtime path has no scipy; :mod:`perception.eval.tracking`
uses them too.
"""

from __future__ import annotations

import math

import numpy as np

from perception.frames import Detections, Track
from perception.postprocess.nms import box_iou

# ----------------------------------------------------------------------------------------------------------
# Assignment


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


# ----------------------------------------------------------------------------------------------------------
# Kalman filter

REF_FPS = 30.0
"""Frame rate (1/s) at which the ByteTrack / DeepSORT per-frame noise levels below are defined."""
STD_WEIGHT_POSITION = 1.0 / 20
"""Position noise per reference frame, as a fraction of the box size (ByteTrack's ``_std_weight_position``)."""
STD_WEIGHT_VELOCITY = 1.0 / 160
"""Velocity noise per reference frame, as a fraction of the box size (``_std_weight_velocity``)."""
DUPLICATE_MIN_IOS = 0.9
"""Duplicate tracks: the smaller box lies at least this fraction inside the larger (intersection over smaller)."""
DUPLICATE_MAX_BOTTOM_FRAC = 0.1
"""... their bottom edges (ground contact) differ by at most this fraction of the taller box's height: two
objects at the same distance cannot hide one another, while an occluded object's visible box ends above the
occluder's bottom edge."""
DUPLICATE_MIN_HEIGHT_PX = 24.0
"""... and the smaller box is at least this tall: distant objects a few pixels high in neighbouring lanes
overlap in the image and stand within a pixel of the same line, whatever their distance apart."""
DUPLICATE_MAX_REL_SPEED = 1.0
"""... and their velocities differ by at most this many widths of the wider box per second (two pedestrians
crossing each other, briefly one inside the other, move apart at several widths a second)."""
MIN_NOISE_SIZE_PX = 2.0
"""Box sizes below this (px) are raised to it when scaling noise, so a zero-size box keeps a proper filter."""


def _noise_size(mean: np.ndarray) -> np.ndarray:
    """float [T, 4] (w, h, w, h) of states [T, 8], floored at MIN_NOISE_SIZE_PX: the scale of each noise."""
    wh = np.maximum(mean[:, 2:4], MIN_NOISE_SIZE_PX)
    return np.concatenate([wh, wh], axis=1)


def _state_boxes(mean: np.ndarray) -> np.ndarray:
    """float64 [T, 4] x1, y1, x2, y2 of states [T, 8] (width and height clamped at 0), as BoxKalman.box_xyxy."""
    c = mean[:, :2]
    half = np.maximum(mean[:, 2:4], 0.0) / 2
    return np.concatenate([c - half, c + half], axis=1)


def _xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


class BoxKalman:
    """Constant-velocity Kalman filter of one box, in continuous time.

    State float64 [8]: (cx, cy, w, h) in frame pixels and their rates (vcx, vcy, vw, vh) in pixels per
    second. The noise is scaled by the box size as in DeepSORT / ByteTrack (x and w by the width, y and h by
    the height); the process noise is a random walk whose variance grows linearly with ``dt`` and equals the
    per-frame noise of ByteTrack at ``dt = 1 / REF_FPS``.

    Args:
        box_xyxy: the first measurement, [4] x1, y1, x2, y2 in frame pixels.
    """

    def __init__(self, box_xyxy: np.ndarray):
        z = _xyxy_to_cxcywh(box_xyxy)
        self.mean = np.concatenate([z, np.zeros(4)])
        size = _noise_size(self.mean[None])[0]
        p, vel = 2 * STD_WEIGHT_POSITION, 10 * STD_WEIGHT_VELOCITY * REF_FPS  # px/frame -> px/s
        self.cov = np.diag(np.concatenate([p * size, vel * size]) ** 2)

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds (dt >= 0)."""
        BoxKalman.predict_many([self], dt)

    def update(self, box_xyxy: np.ndarray) -> None:
        """Correct the state with a measured box [4] x1, y1, x2, y2 in frame pixels."""
        BoxKalman.update_many([self], np.asarray(box_xyxy, np.float64).reshape(1, 4))

    @staticmethod
    def predict_many(filters: list[BoxKalman], dt: float) -> None:
        """:meth:`predict` for several filters at once (one batched computation)."""
        if dt <= 0 or not filters:
            return
        mean = np.stack([f.mean for f in filters])
        cov = np.stack([f.cov for f in filters])
        size = _noise_size(mean)
        pos = STD_WEIGHT_POSITION * size
        vel = STD_WEIGHT_VELOCITY * REF_FPS * size  # px/s per reference frame
        q = np.concatenate([pos**2, vel**2], axis=1) * (REF_FPS * dt)
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        mean = mean @ f.T
        cov = f @ cov @ f.T
        diag = np.arange(8)
        cov[:, diag, diag] += q
        for k, flt in enumerate(filters):
            flt.mean, flt.cov = mean[k], cov[k]

    @staticmethod
    def update_many(filters: list[BoxKalman], boxes_xyxy: np.ndarray) -> None:
        """:meth:`update` for several filters at once; ``boxes_xyxy`` float [T, 4], one box per filter."""
        if not filters:
            return
        b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        z = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
        mean = np.stack([f.mean for f in filters])
        cov = np.stack([f.cov for f in filters])
        r = (STD_WEIGHT_POSITION * _noise_size(mean)) ** 2
        s = cov[:, :4, :4].copy()
        diag = np.arange(4)
        s[:, diag, diag] += r
        # K = P H^T S^-1; S is symmetric, so K^T = S^-1 (P H^T)^T = S^-1 P[:4, :].
        gain = np.linalg.solve(s, cov[:, :4, :]).transpose(0, 2, 1)
        mean = mean + np.einsum("tij,tj->ti", gain, z - mean[:, :4])
        cov = cov - gain @ s @ gain.transpose(0, 2, 1)
        cov = (cov + cov.transpose(0, 2, 1)) / 2  # keep it symmetric against rounding
        for k, flt in enumerate(filters):
            flt.mean, flt.cov = mean[k], cov[k]

    def stop_size_change(self) -> None:
        """Zero the size rates, as ByteTrack does for lost tracks, so a coasting box does not shrink away."""
        self.mean[6:] = 0.0

    def box_xyxy(self) -> np.ndarray:
        """The state's box, float64 [4] x1, y1, x2, y2 in frame pixels (width and height clamped at 0)."""
        cx, cy = self.mean[0], self.mean[1]
        w, h = max(self.mean[2], 0.0), max(self.mean[3], 0.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def velocity_pxps(self) -> np.ndarray:
        """Box-centre velocity, float64 [2] (vx, vy) in frame pixels per second."""
        return self.mean[4:6].copy()


# ----------------------------------------------------------------------------------------------------------
# Tracker


class _Track:
    """Mutable per-track state (internal)."""

    __slots__ = (
        "kf",
        "track_id",
        "label",
        "label_votes",
        "score",
        "hits",
        "age",
        "missed",
        "lost_s",
        "last_box",
        "row",
    )

    def __init__(self, box: np.ndarray, score: float, label: int):
        self.kf = BoxKalman(box)
        self.last_box = np.asarray(box, np.float64).copy()
        self.track_id = 0  # 0 while tentative
        self.label = label
        self.label_votes = {label: score}
        self.score = score
        self.hits = 1
        self.age = 1
        self.missed = 0  # frames since the last match
        self.lost_s = 0.0  # seconds since the last match
        self.row = -1  # index in the tracker's per-frame box arrays

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def record_match(self, box: np.ndarray, score: float, label: int) -> None:
        """Bookkeeping of a match (the filter is updated by the caller, batched over tracks)."""
        self.last_box = np.asarray(box, np.float64).copy()
        self.score = score
        self.hits += 1
        self.missed = 0
        self.lost_s = 0.0
        self.label_votes[label] = self.label_votes.get(label, 0.0) + score
        # Class-agnostic mode: the label with most score so far (class-aware tracks only see one label).
        self.label = max(self.label_votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]

    def to_track(self) -> Track:
        box = self.kf.box_xyxy()
        return Track(
            track_id=self.track_id,
            box_xyxy=box.astype(np.float32),
            score=float(self.score) if self.missed == 0 else 0.0,
            label=int(self.label),
            hits=self.hits,
            age_frames=self.age,
            frames_since_update=self.missed,
            velocity_pxps=self.kf.velocity_pxps().astype(np.float32),
        )


class ByteTracker:
    """ByteTrack multi-object tracker (Zhang et al. 2022) with a time-aware Kalman filter.

    Per call of :meth:`update` (one frame):

    1. Rows with a non-finite box or score are dropped (a broken detector output must not stop the live
       loop). Detections split into high (``score >= high_score``) and low
       (``low_score <= score < high_score``); lower scores are ignored.
    2. Every track is predicted to the frame's timestamp (``dt`` from the previous call). Tracks unmatched
       for more than ``max_lost_s`` seconds are removed.
    3. High detections vs confirmed tracks (tracked and lost): IoU of the predicted box, pairs allowed when
       IoU >= ``match_iou`` (and the labels agree when ``class_aware``), maximum total similarity
       (IoU x detection score when ``fuse_score``, as ByteTrack does; else IoU).
    4. Low detections vs the confirmed tracks still unmatched that were matched in the previous frame,
       IoU >= ``low_match_iou``, similarity IoU.
    5. With ``recover_last_box``: remaining high detections vs the confirmed tracks still unmatched, by the
       IoU of the track's last matched detection box instead of its prediction (gate ``match_iou``): the
       observation-centric recovery of OC-SORT (Cao et al., CVPR 2023), for tracks whose prediction drifted
       while lost.
    6. With ``pad_px > 0``: remaining high detections vs the confirmed tracks still unmatched, by the padded
       IoU: every box grown by ``pad_px`` on each side, the larger of the values for the track's predicted
       and last matched box (gate ``match_iou``). A pair is allowed only when the track has no better padded
       match among all of the frame's detections (high and low, matched or not) and the detection none among
       all tracks (confirmed, lost, tentative), whatever their labels, so a track whose own detection is
       missing does not take its neighbour's in a cluster of small boxes. For boxes tens of pixels wide the
       padding changes little; for boxes a few pixels wide it absorbs whole-pixel jumps of the box (fast
       motion across the image, the visible extent shrinking or growing under occlusion) that drive their
       plain IoU to zero.
    6b. With ``merge_duplicates``: a confirmed track still unmatched that duplicates a matched one is merged
       into it: same label, box at least ``DUPLICATE_MIN_IOS`` inside the other's and at least
       ``DUPLICATE_MIN_HEIGHT_PX`` tall, bottom edges within ``DUPLICATE_MAX_BOTTOM_FRAC`` of the height,
       velocities within ``DUPLICATE_MAX_REL_SPEED`` widths per second. The matched track carries on, under
       the older of the two ids. Confirmed tracks unmatched after this
       become lost (size rates zeroed, coasting on the prediction).
    7. Remaining high detections vs tentative tracks (IoU >= ``tentative_match_iou``); a tentative track is
       confirmed (and gets the next id) at ``min_hits`` matches, and removed when a frame leaves it unmatched.
    8. Remaining high detections with ``score >= new_track_score`` start tentative tracks; in the first frame
       (of the run or of a new segment) they are confirmed at once.

    Timestamps: ``dt`` is the difference to the previous call's timestamp. A repeated timestamp or one that
    goes back by at most ``max_backward_s`` (clock jitter) is treated as a step of ``min_dt_s``; a larger
    jump back (a restarted or rewound source) starts a new segment: all tracks are dropped, ids keep
    counting up. A non-finite timestamp counts as a step of ``min_dt_s``.

    Args:
        high_score: score from which a detection is "high" (may match any confirmed track, start tracks).
        low_score: score from which a detection is used at all ("low" below ``high_score``).
        new_track_score: score a high detection needs to start a track.
        match_iou: IoU gate of the first association (high detections).
        low_match_iou: IoU gate of the second association (low detections).
        tentative_match_iou: IoU gate between high detections and tentative tracks.
        max_lost_s: seconds a confirmed track may stay unmatched before it is removed.
        min_hits: matches (the first detection included) that confirm a tentative track.
        class_aware: only match detections and tracks of the same label.
        fuse_score: rank first-stage pairs by IoU x score instead of IoU.
        report_lost: also report confirmed tracks that coast on their prediction this frame.
        recover_last_box: add stage 5 (match unmatched confirmed tracks by their last matched box).
        pad_px: padding (frame pixels, each side) of stage 6, the padded-IoU association of small boxes;
            0 turns the stage off.
        merge_duplicates: add stage 6b (merge an unmatched confirmed track into a matched one it duplicates).
        min_dt_s: step (s) used for a repeated or slightly earlier timestamp.
        max_backward_s: largest backward timestamp jump (s) treated as jitter rather than a new segment.
    """

    def __init__(
        self,
        high_score: float = 0.5,
        low_score: float = 0.1,
        new_track_score: float = 0.6,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        max_lost_s: float = 1.0,
        min_hits: int = 2,
        class_aware: bool = True,
        *,
        tentative_match_iou: float = 0.3,
        fuse_score: bool = True,
        report_lost: bool = False,
        recover_last_box: bool = True,
        pad_px: float = 2.0,
        merge_duplicates: bool = True,
        min_dt_s: float = 1e-3,
        max_backward_s: float = 0.1,
    ):
        if not 0 <= low_score <= high_score <= new_track_score:
            raise ValueError(
                f"need 0 <= low_score <= high_score <= new_track_score, got {low_score}, {high_score}, "
                f"{new_track_score}"
            )
        for name, value in (
            ("match_iou", match_iou),
            ("low_match_iou", low_match_iou),
            ("tentative_match_iou", tentative_match_iou),
        ):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if max_lost_s < 0 or min_hits < 1 or min_dt_s <= 0 or max_backward_s < 0 or not pad_px >= 0:
            raise ValueError(
                f"need max_lost_s >= 0, min_hits >= 1, min_dt_s > 0, max_backward_s >= 0, pad_px >= 0; got "
                f"{max_lost_s}, {min_hits}, {min_dt_s}, {max_backward_s}, {pad_px}"
            )
        self.high_score = float(high_score)
        self.low_score = float(low_score)
        self.new_track_score = float(new_track_score)
        self.match_iou = float(match_iou)
        self.low_match_iou = float(low_match_iou)
        self.tentative_match_iou = float(tentative_match_iou)
        self.max_lost_s = float(max_lost_s)
        self.min_hits = int(min_hits)
        self.class_aware = bool(class_aware)
        self.fuse_score = bool(fuse_score)
        self.report_lost = bool(report_lost)
        self.recover_last_box = bool(recover_last_box)
        self.pad_px = float(pad_px)
        self.merge_duplicates = bool(merge_duplicates)
        self.min_dt_s = float(min_dt_s)
        self.max_backward_s = float(max_backward_s)
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and the clock. Ids keep counting up, so an id is never reused within a run."""
        self._tracks: list[_Track] = []
        self._last_t: float | None = None
        self.dropped_rows = 0  # detection rows dropped for a non-finite box or score, since the last reset

    def _step_time(self, timestamp_s: float) -> tuple[float, bool]:
        """(dt in seconds to predict over, whether this frame starts a segment)."""
        t = float(timestamp_s)
        if self._last_t is None:
            self._last_t = t if math.isfinite(t) else 0.0
            return 0.0, True
        if not math.isfinite(t):
            self._last_t += self.min_dt_s
            return self.min_dt_s, False
        dt = t - self._last_t
        if dt < -self.max_backward_s:
            self._tracks = []
            self._last_t = t
            return 0.0, True
        self._last_t = t
        return (dt, False) if dt > 0 else (self.min_dt_s, False)

    def update(self, detections: Detections, timestamp_s: float) -> list[Track]:
        """Advance the tracks by one frame.

        Args:
            detections: boxes in frame pixels, their scores in [0, 1] and labels (``Detections``); rows with a
                non-finite box or score are dropped (counted in ``dropped_rows``).
            timestamp_s: the frame's time in seconds (capture time for a camera, presentation time for a
                file); see the class docstring for repeated, backward and non-finite timestamps.

        Returns:
            The confirmed tracks matched in this frame (``frames_since_update == 0``), plus, with
            ``report_lost``, the confirmed tracks coasting on their prediction; sorted by ``track_id``. Boxes
            are the Kalman-filtered boxes in frame pixels, velocities in frame pixels per second.
        """
        boxes = np.asarray(detections.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(detections.labels).reshape(-1)
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        if not finite.all():
            self.dropped_rows += int((~finite).sum())
            boxes, scores, labels = boxes[finite], scores[finite], labels[finite]

        dt, first_frame = self._step_time(timestamp_s)
        BoxKalman.predict_many([t.kf for t in self._tracks], dt)
        for trk in self._tracks:
            trk.age += 1
            trk.lost_s += dt
        # Tolerance: ten steps of 0.1 s must not add up to "more than 1 s" through rounding.
        self._tracks = [t for t in self._tracks if t.lost_s <= self.max_lost_s + 1e-6]

        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        # Every track's predicted box and last matched box, kept up to date as tracks are matched.
        for k, trk in enumerate(self._tracks):
            trk.row = k
        if self._tracks:
            pred_all = _state_boxes(np.stack([t.kf.mean for t in self._tracks]))
            last_all = np.stack([t.last_box for t in self._tracks])
        else:
            pred_all, last_all = np.zeros((0, 4)), np.zeros((0, 4))
        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if not t.confirmed]
        matched: set[int] = set()  # id() of tracks matched this frame

        def assign(tracks: list[_Track], det_idx: np.ndarray, gate: float, fuse: bool, by: str = "pred") -> np.ndarray:
            """Match ``tracks`` to detections ``det_idx`` by the IoU of the predicted box (``by="pred"``), of the
            last matched box (``"last"``) or the padded IoU of stage 6 (``"padded"``); update the matched; return
            the unmatched det_idx."""
            if not tracks or det_idx.size == 0:
                return det_idx
            idx = np.fromiter((t.row for t in tracks), np.intp, len(tracks))
            if by == "padded":
                # All tracks vs all detections in use (det_idx among them): mutual best means no better padded
                # match for the track among all those detections, nor for the detection among all tracks.
                in_use = np.flatnonzero(scores >= self.low_score)
                every = self._padded_iou(pred_all, last_all, boxes[in_use])
                cols = np.searchsorted(in_use, det_idx)
                iou = every[np.ix_(idx, cols)]
                valid = (iou > 0) & (iou >= gate) & (iou >= every[idx].max(axis=1)[:, None])
                valid &= iou >= every[:, cols].max(axis=0)[None, :]
            else:
                iou = box_iou(last_all[idx] if by == "last" else pred_all[idx], boxes[det_idx])
                valid = (iou >= gate) & (iou > 0)
            if self.class_aware:
                valid &= np.array([t.label for t in tracks])[:, None] == labels[det_idx][None, :]
            # A score of 0 would make the pair worthless to the solver; keep it barely positive.
            sim = iou * np.maximum(scores[det_idx], 1e-6)[None, :] if fuse else iou
            rows, cols = max_weight_matching(sim, valid)
            BoxKalman.update_many([tracks[r].kf for r in rows.tolist()], boxes[det_idx[cols]])
            if rows.size:
                pred_all[idx[rows]] = _state_boxes(np.stack([tracks[r].kf.mean for r in rows.tolist()]))
                last_all[idx[rows]] = boxes[det_idx[cols]]
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                d = det_idx[c]
                tracks[r].record_match(boxes[d], float(scores[d]), int(labels[d]))
                matched.add(id(tracks[r]))
            keep = np.ones(det_idx.size, bool)
            keep[cols] = False
            return det_idx[keep]

        # Step 3: high detections vs all confirmed tracks (tracked and recently lost).
        high_left = assign(confirmed, high, self.match_iou, self.fuse_score)
        # Step 4: low detections vs confirmed tracks that were tracked in the previous frame.
        tracked_last = [t for t in confirmed if id(t) not in matched and t.missed == 0]
        assign(tracked_last, low, self.low_match_iou, False)
        if self.recover_last_box:
            # Step 5 (OC-SORT's observation-centric recovery): a track whose prediction drifted while it was
            # lost (or that was fed a wrong box) is often still where it was last seen.
            unmatched = [t for t in confirmed if id(t) not in matched]
            high_left = assign(unmatched, high_left, self.match_iou, self.fuse_score, by="last")
        if self.pad_px > 0:
            # Step 6: small boxes, whose plain IoU a jump of a pixel or two breaks.
            unmatched = [t for t in confirmed if id(t) not in matched]
            high_left = assign(unmatched, high_left, self.match_iou, self.fuse_score, by="padded")
        merged = self._merge_duplicates(confirmed, matched, pred_all) if self.merge_duplicates else set()
        # Step 7: remaining high detections vs tentative tracks.
        high_left = assign(tentative, high_left, self.tentative_match_iou, self.fuse_score)

        survivors: list[_Track] = []
        for trk in self._tracks:
            if id(trk) in merged:
                continue
            if id(trk) in matched:
                if not trk.confirmed and trk.hits >= self.min_hits:
                    trk.track_id = self._take_id()
                survivors.append(trk)
            elif trk.confirmed:
                if trk.missed == 0:
                    trk.kf.stop_size_change()  # tracked -> lost
                trk.missed += 1
                survivors.append(trk)
            # an unmatched tentative track is dropped (ByteTrack): it was most likely a false positive
        # Step 8: new tracks from confident leftovers.
        for d in high_left.tolist():
            if scores[d] < self.new_track_score:
                continue
            trk = _Track(boxes[d], float(scores[d]), int(labels[d]))
            if first_frame or self.min_hits <= 1:
                trk.track_id = self._take_id()
            survivors.append(trk)
        self._tracks = survivors

        out = [t.to_track() for t in self._tracks if t.confirmed and (t.missed == 0 or self.report_lost)]
        out.sort(key=lambda tr: tr.track_id)
        return out

    @staticmethod
    def _merge_duplicates(confirmed: list[_Track], matched: set[int], boxes: np.ndarray) -> set[int]:
        """Stage 6b: merge unmatched confirmed tracks into the matched tracks they duplicate; ``boxes`` [T, 4]
        are every track's current box (matched: updated, unmatched: predicted). Returns the id() of the
        tracks merged away. Pairs are taken most-overlapping first, each track in one pair at most."""
        hit = [t for t in confirmed if id(t) in matched]
        miss = [t for t in confirmed if id(t) not in matched]
        if not hit or not miss:
            return set()
        a = boxes[[t.row for t in hit]][:, None, :]  # [H, 1, 4]
        b = boxes[[t.row for t in miss]][None, :, :]  # [1, U, 4]
        wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0.0, None)
        area_a = np.prod(np.clip(a[..., 2:] - a[..., :2], 0.0, None), axis=-1)
        area_b = np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)
        ios = wh[..., 0] * wh[..., 1] / np.maximum(np.minimum(area_a, area_b), 1e-9)  # [H, U]
        height = np.maximum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1])
        width = np.maximum(a[..., 2] - a[..., 0], b[..., 2] - b[..., 0])
        va = np.stack([t.kf.velocity_pxps() for t in hit])[:, None, :]
        vb = np.stack([t.kf.velocity_pxps() for t in miss])[None, :, :]
        same_label = np.array([t.label for t in hit])[:, None] == np.array([t.label for t in miss])[None, :]
        dup = (
            same_label
            & (ios >= DUPLICATE_MIN_IOS)
            & (np.minimum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1]) >= DUPLICATE_MIN_HEIGHT_PX)
            & (np.abs(a[..., 3] - b[..., 3]) <= DUPLICATE_MAX_BOTTOM_FRAC * height)
            & (np.linalg.norm(va - vb, axis=-1) <= DUPLICATE_MAX_REL_SPEED * width)
        )
        merged: set[int] = set()
        used_hit: set[int] = set()
        for i, j in sorted(zip(*np.nonzero(dup), strict=True), key=lambda ij: -ios[ij]):
            keep, gone = hit[i], miss[j]
            if i in used_hit or id(gone) in merged:
                continue
            used_hit.add(i)
            merged.add(id(gone))
            # The older id carries on, so the object keeps the identity it had before the duplicate appeared.
            keep.track_id = min(keep.track_id, gone.track_id)
            keep.hits = max(keep.hits, gone.hits)
            keep.age = max(keep.age, gone.age)
            for label, votes in gone.label_votes.items():
                keep.label_votes[label] = keep.label_votes.get(label, 0.0) + votes
        return merged

    def _padded_iou(self, pred: np.ndarray, last: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
        """float [T, D]: padded IoU of tracks, given by their predicted and last matched boxes [T, 4], with
        detection boxes [D, 4]: every box grown by ``pad_px`` on each side, per track the larger of the values
        for its two boxes."""
        if pred.shape[0] == 0 or det_boxes.shape[0] == 0:
            return np.zeros((pred.shape[0], det_boxes.shape[0]))
        pad = np.array([-self.pad_px, -self.pad_px, self.pad_px, self.pad_px])
        both = box_iou(np.concatenate([pred, last]) + pad, det_boxes + pad)
        return np.maximum(both[: pred.shape[0]], both[pred.shape[0] :])

    def _take_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    def live_ids(self) -> set[int]:
        """Ids of the confirmed tracks still held (tracked or lost): state keyed by id elsewhere stays valid."""
        return {t.track_id for t in self._tracks if t.confirmed}

    @property
    def num_tracks(self) -> int:
        """Tracks held now: confirmed (tracked or lost) and tentative."""
        return len(self._tracks)
