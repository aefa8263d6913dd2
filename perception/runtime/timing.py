"""Time a backend's network forward alone: a letterboxed frame in, the model's outputs out.

The input is a real-looking frame (a smooth gradient, not zeros, so no backend takes a shortcut on
constant input); warm-up runs are discarded. This is the figure the model card quotes as "network
forward"; the end-to-end pipeline benchmark (decode to JSONL) is a separate command.
"""

from __future__ import annotations

import time

import numpy as np

from perception.runtime.base import Backend


def time_forward(backend: Backend, runs: int = 50, warmup: int = 5, batch: int = 1) -> dict:
    """Median / p90 milliseconds of ``backend.infer`` on a batch of ``batch`` frames."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    h, w = backend.contract.graph_input_size  # the camera frame for a whole-frame model
    ramp = (
        np.linspace(0, 255, w, dtype=np.float32)[None, :, None] + np.linspace(0, 60, h, dtype=np.float32)[:, None, None]
    )
    frame = np.clip(ramp + np.array([0, 20, 40], np.float32), 0, 255).astype(np.uint8)
    images = np.ascontiguousarray(np.repeat(frame[None], batch, 0))
    for _ in range(warmup):
        backend.infer(images)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.infer(images)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {
        "input": f"{batch}x{h}x{w}",
        "threads": getattr(backend, "threads", 0) or "default",
        "median_ms": float(np.median(t)),
        "p90_ms": float(np.percentile(t, 90)),
        "runs": runs,
    }
