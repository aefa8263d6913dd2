"""Soak test: the camera node on a looping clip for minutes or hours, sampled at intervals.

Each interval records resident memory, frames/s, captured/dropped/stale/failed counts and the latency
percentiles of that interval's frames. The verdict compares memory at the start (after a warm-up) with
memory at the end and fits a slope (MB per hour): a leak shows as growth, not as a high number.
Results go to ``soak.csv`` (one row per interval), ``soak.json`` (summary) and ``soak.png`` (memory and
p99 latency over time) in the output folder.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from perception.live.node import CameraNode, current_rss_bytes, percentile

log = logging.getLogger(__name__)


class LatencyHistogram:
    """Latencies in fixed 0.1 ms bins up to ``max_ms`` (beyond: one overflow bin; the max is kept exactly).

    A soak runs for hours: keeping every latency would itself grow memory (~1 MB an hour at 25 frames/s)
    and show up as the leak the test looks for. Percentiles come out to the bin width.
    """

    def __init__(self, max_ms: float = 2000.0, bin_ms: float = 0.1):
        self.bin_ms = bin_ms
        self.counts = np.zeros(int(round(max_ms / bin_ms)) + 1, np.int64)
        self.max_ms: float | None = None

    def add(self, values_ms: list[float]) -> None:
        if not values_ms:
            return
        v = np.asarray(values_ms, np.float64)
        idx = np.minimum((v / self.bin_ms).astype(np.int64), len(self.counts) - 1)
        np.add.at(self.counts, idx, 1)
        top = float(v.max())
        self.max_ms = top if self.max_ms is None else max(self.max_ms, top)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile, as the upper edge of its bin (never below the true value)."""
        n = self.n
        if n == 0:
            return None
        rank = max(1, math.ceil(q / 100 * n))
        k = int(np.searchsorted(np.cumsum(self.counts), rank))
        if k == len(self.counts) - 1:
            return self.max_ms
        return round(min((k + 1) * self.bin_ms, self.max_ms if self.max_ms is not None else math.inf), 3)


@dataclass
class SoakSample:
    t_s: float
    rss_mb: float
    fps: float
    captured: int
    processed: int
    dropped: int
    stale: int
    failed: int
    frames_in_interval: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class SoakReport:
    minutes: float
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_stale: int = 0
    frames_failed: int = 0
    reconnects: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    rss_start_mb: float | None = None  # median of the samples in the first quarter after warm-up
    rss_end_mb: float | None = None  # median of the samples in the last quarter
    rss_slope_mb_per_h: float | None = None
    p99_limit_ms: float = 100.0
    growth_limit_mb: float = 20.0
    samples: list[SoakSample] = field(default_factory=list)

    @property
    def memory_flat(self) -> bool | None:
        if self.rss_start_mb is None or self.rss_end_mb is None:
            return None
        return self.rss_end_mb - self.rss_start_mb <= self.growth_limit_mb

    @property
    def latency_ok(self) -> bool | None:
        p99 = self.latency_ms.get("p99")
        return None if p99 is None else p99 <= self.p99_limit_ms

    @property
    def ok(self) -> bool:
        return bool(self.memory_flat) and bool(self.latency_ok) and self.frames_failed == 0

    def format(self) -> str:
        lat = self.latency_ms
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
        growth = (
            "n/a"
            if self.rss_start_mb is None or self.rss_end_mb is None
            else f"{self.rss_end_mb - self.rss_start_mb:+.1f}"
        )
        total = self.frames_processed + self.frames_dropped + self.frames_stale
        drop_pct = 100.0 * (self.frames_dropped + self.frames_stale) / total if total else 0.0
        return "\n".join(
            [
                f"soak: {self.minutes:.1f} min, {self.frames_processed} frames processed, "
                f"{self.frames_dropped} dropped + {self.frames_stale} stale ({drop_pct:.1f} %), "
                f"{self.frames_failed} failed, {self.reconnects} reconnects",
                f"latency capture → output, ms: p50 {fmt(lat.get('p50'))}, p90 {fmt(lat.get('p90'))}, "
                f"p99 {fmt(lat.get('p99'))}, max {fmt(lat.get('max'))} (limit p99 ≤ {self.p99_limit_ms:.0f})",
                f"resident memory: {fmt(self.rss_start_mb)} MB after warm-up → {fmt(self.rss_end_mb)} MB at the end "
                f"({growth} MB; slope {fmt(self.rss_slope_mb_per_h)} MB/h; limit +{self.growth_limit_mb:.0f} MB)",
                f"verdict: {'PASS' if self.ok else 'FAIL'} (memory flat: {self.memory_flat}, "
                f"p99 within limit: {self.latency_ok}, no failed frames: {self.frames_failed == 0})",
            ]
        )


def soak(
    node: CameraNode,
    minutes: float,
    out_dir: Path,
    interval_s: float = 10.0,
    warmup_s: float = 30.0,
    stop: threading.Event | None = None,
    p99_limit_ms: float = 100.0,
    growth_limit_mb: float = 20.0,
) -> SoakReport:
    """Run ``node`` for ``minutes`` (or until ``stop``), sampling every ``interval_s``; write the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    report = SoakReport(minutes=minutes, p99_limit_ms=p99_limit_ms, growth_limit_mb=growth_limit_mb)
    histogram = LatencyHistogram()
    node.drain_latencies()  # start recording
    runner_result: list = []
    runner = threading.Thread(
        target=lambda: runner_result.append(node.run(stop, duration_s=minutes * 60.0)), name="node", daemon=True
    )
    start = time.monotonic()
    runner.start()
    csv_path = out_dir / "soak.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SoakSample.__dataclass_fields__))
        writer.writeheader()
        while runner.is_alive():
            runner.join(interval_s)
            lat = node.drain_latencies()
            histogram.add(lat)
            h = node.health()
            fr = h["frames"]
            sample = SoakSample(
                t_s=round(time.monotonic() - start, 1),
                rss_mb=round(current_rss_bytes() / 2**20, 2),
                fps=h["fps"],
                captured=fr["captured"],
                processed=fr["processed"],
                dropped=fr["dropped"],
                stale=fr["stale"],
                failed=fr["failed"],
                frames_in_interval=len(lat),
                p50_ms=_r(percentile(lat, 50)),
                p99_ms=_r(percentile(lat, 99)),
                max_ms=_r(max(lat) if lat else None),
            )
            report.samples.append(sample)
            writer.writerow(asdict(sample))
            f.flush()
            log.info(
                "soak %5.0f s: rss %.1f MB, %.1f frames/s, p99 %s ms, dropped %d, stale %d",
                sample.t_s,
                sample.rss_mb,
                sample.fps,
                sample.p99_ms,
                sample.dropped,
                sample.stale,
            )
    summary = runner_result[0] if runner_result else node.summary
    report.frames_processed = summary.frames_processed
    report.frames_dropped = summary.frames_dropped
    report.frames_stale = summary.frames_stale
    report.frames_failed = summary.frames_failed
    report.reconnects = summary.reconnects
    report.minutes = (time.monotonic() - start) / 60.0
    report.latency_ms = {
        "p50": histogram.percentile(50),
        "p90": histogram.percentile(90),
        "p99": histogram.percentile(99),
        "max": _r(histogram.max_ms),
    }
    _memory_trend(report, warmup_s)
    (out_dir / "soak.json").write_text(
        json.dumps(
            {
                **{k: v for k, v in asdict(report).items() if k != "samples"},
                "memory_flat": report.memory_flat,
                "latency_ok": report.latency_ok,
                "ok": report.ok,
                "csv": str(csv_path),
            },
            indent=2,
        )
        + "\n"
    )
    plot_soak(report, out_dir / "soak.png")
    return report


def _memory_trend(report: SoakReport, warmup_s: float) -> None:
    """Start/end medians (first and last quarter of the post-warm-up samples) and a least-squares slope."""
    steady = [s for s in report.samples if s.t_s >= warmup_s] or report.samples
    if len(steady) < 2:
        return
    q = max(1, len(steady) // 4)
    report.rss_start_mb = round(float(np.median([s.rss_mb for s in steady[:q]])), 2)
    report.rss_end_mb = round(float(np.median([s.rss_mb for s in steady[-q:]])), 2)
    t = np.array([s.t_s for s in steady]) / 3600.0
    m = np.array([s.rss_mb for s in steady])
    if t[-1] > t[0]:
        report.rss_slope_mb_per_h = round(float(np.polyfit(t, m, 1)[0]), 2)


def plot_soak(report: SoakReport, path: Path, size: tuple[int, int] = (900, 520)) -> None:
    """Two panels (resident memory MB, p99 latency ms) over time, drawn with OpenCV (no plotting library)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    samples = report.samples
    panels = [
        ("resident memory (MB)", [s.rss_mb for s in samples], (200, 80, 0)),
        ("p99 latency per interval (ms)", [s.p99_ms for s in samples], (0, 0, 200)),
    ]
    t = [s.t_s / 60.0 for s in samples]
    ph = (h - 60) // 2
    for k, (title, values, color) in enumerate(panels):
        top = 30 + k * (ph + 20)
        left, right, bottom = 70, w - 20, top + ph - 20
        cv2.rectangle(img, (left, top), (right, bottom), (180, 180, 180), 1)
        cv2.putText(img, title, (left, top - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        pts = [(x, v) for x, v in zip(t, values, strict=True) if v is not None and math.isfinite(v)]
        if len(pts) < 2:
            continue
        xs, vs = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        lo, hi = float(vs.min()), float(vs.max())
        if k == 1:
            lo, hi = 0.0, max(hi, report.p99_limit_ms) * 1.1
        pad = max(1e-6, (hi - lo) * 0.1) if k == 0 else 0.0
        lo, hi = lo - pad, hi + pad
        x_max = max(float(xs.max()), 1e-6)
        px = left + (xs / x_max) * (right - left)
        py = bottom - (vs - lo) / max(hi - lo, 1e-9) * (bottom - top)
        cv2.polylines(img, [np.column_stack([px, py]).astype(np.int32)], False, color, 2, cv2.LINE_AA)
        if k == 1:
            y = int(bottom - (report.p99_limit_ms - lo) / (hi - lo) * (bottom - top))
            cv2.line(img, (left, y), (right, y), (0, 150, 0), 1, cv2.LINE_AA)
            cv2.putText(img, "limit", (right - 45, y - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 150, 0), 1)
        for value, y in ((hi, top), (lo, bottom)):
            cv2.putText(img, f"{value:.0f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{x_max:.1f} min", (right - 60, bottom + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
