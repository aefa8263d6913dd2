"""The motion model of a tracked box: a constant-velocity Kalman filter in continuous time (frames may come
at any rate or with gaps), with ByteTrack's / DeepSORT's noise levels. Boxes in frame pixels, times in seconds.
"""

from __future__ import annotations

import numpy as np

REF_FPS = 30.0
"""Frame rate (1/s) at which the ByteTrack / DeepSORT per-frame noise levels below are defined."""
STD_WEIGHT_POSITION = 1.0 / 20
"""Position noise per reference frame, as a fraction of the box size (ByteTrack's ``_std_weight_position``)."""
STD_WEIGHT_VELOCITY = 1.0 / 160
"""Velocity noise per reference frame, as a fraction of the box size (``_std_weight_velocity``)."""
MIN_NOISE_SIZE_PX = 2.0
"""Box sizes below this (px) are raised to it when scaling noise, so a zero-size box keeps a proper filter."""


def _noise_size(mean: np.ndarray) -> np.ndarray:
    """float [T, 4] (w, h, w, h) of states [T, 8], floored at MIN_NOISE_SIZE_PX: the scale of each noise."""
    wh = np.maximum(mean[:, 2:4], MIN_NOISE_SIZE_PX)
    return np.concatenate([wh, wh], axis=1)


def state_boxes(mean: np.ndarray) -> np.ndarray:
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
