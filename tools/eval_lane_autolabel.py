"""Measure the lane-paint auto-labeller on synthetic frames; draw it over real CamVid frames.

    python tools/eval_lane_autolabel.py --n 250 --seed 202 --json /tmp/autolabel_seed202.json
    python tools/eval_lane_autolabel.py --n 0 --camvid-montage docs/autolabel_camvid.png

Synthetic frames (``perception.data.synth``) carry exact lane-paint labels, so precision, recall and IoU
of ``perception.data.autolabel.autolabel_lane_paint`` are measured there (pixel counts summed over all
frames, overall and per condition). CamVid has no paint labels: the montage (each frame, then the same
frame with the found paint in red and the labelled road in faint green) is for judging it by eye.
Tune on one seed and report on another (docs/autolabel.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from perception.cli.options import parse_size
from perception.data.autolabel import autolabel_lane_paint, estimate_horizon, evaluate_autolabel, paint_overlay
from perception.eval.report import nan_to_null

log = logging.getLogger("eval_lane_autolabel")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PERCEPTION_SHARED_DATA", REPO.parent / "shared" / "data"))
# Validation frames with lane lines, double yellow lines, an arrow, cycle-lane symbols and shadows.
MONTAGE_FRAMES = (
    "0016E5_07967",
    "0016E5_07999",
    "0016E5_08015",
    "0016E5_08031",
    "0016E5_08063",
    "0016E5_08079",
    "0016E5_08111",
    "0016E5_08143",
)


def parse_param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE (VALUE in JSON), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--param {key}: value is not JSON: {err}") from None


def _make_frame(args: tuple[int, int, tuple[int, int]]):
    """Frame ``index`` of ``seed`` (None and the error text when the generator fails on it)."""
    from perception.data.synth.generate import SynthOptions, synth_frames

    seed, index, size = args
    try:
        return next(synth_frames(1, seed, SynthOptions(size=size), start=index)), None
    except Exception as err:  # noqa: BLE001 - a generator bug on one frame is counted and reported, not hidden
        return None, f"{type(err).__name__}: {err}"


def synthetic_samples(n: int, seed: int, size: tuple[int, int], workers: int) -> tuple[list, list[dict]]:
    """Generate frames 0..n-1 of ``seed``; frames the generator fails on are skipped and listed."""
    jobs = [(seed, i, size) for i in range(n)]
    t0 = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            made = list(pool.map(_make_frame, jobs, chunksize=4))
    else:
        made = [_make_frame(j) for j in jobs]
    samples = [s for s, _ in made if s is not None]
    skipped = [{"index": i, "error": err[:300]} for i, (_, err) in enumerate(made) if err is not None]
    for s in skipped:
        log.warning("synthetic frame %d of seed %d not generated: %s", s["index"], seed, s["error"])
    log.info("generated %d frames in %.1f s", len(samples), time.perf_counter() - t0)
    return samples, skipped


def format_table(result: dict) -> str:
    head = f"{'group':<18} {'frames':>6} {'P':>6} {'R':>6} {'IoU':>6} {'P@tol':>6} {'R@tol':>6} {'true px':>9}"
    lines = [head, "-" * len(head)]
    rows = [("overall", result["overall"])] + list(result["by_condition"].items())
    for name, m in rows:
        vals = " ".join(f"{m[k]:6.3f}" for k in ("precision", "recall", "iou", "precision_tol", "recall_tol"))
        lines.append(f"{name:<18} {m['frames']:>6} {vals} {m['true_px']:>9}")
    lines.append(f"(tolerance {result['tolerance_px']} px; labeller {result['ms_per_frame']:.1f} ms per frame)")
    return "\n".join(lines)


def camvid_montage(root: Path, split: str, names: list[str], out: Path, params: dict) -> list[dict]:
    """Write [frame | overlay] rows for the named CamVid frames; returns per-frame paint statistics.

    Every row is cropped at the same height: 20 px above the highest estimated horizon of the frames.
    """
    from perception.data.camvid import CamVidDataset

    ds = CamVidDataset(root, split=split)
    index = {Path(n).stem: i for i, n in enumerate(ds.names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise SystemExit(f"{root}/{split}: no frames named {missing}")
    rows, stats, tops = [], [], []
    for name in names:
        sample = ds[index[name]]
        road = sample.seg == 1  # CamVid Road -> drivable
        t0 = time.perf_counter()
        paint = autolabel_lane_paint(sample.image, road, **params)
        ms = 1000 * (time.perf_counter() - t0)
        rows.append(np.hstack([sample.image, paint_overlay(sample.image, road, paint)]))
        tops.append(estimate_horizon(road))
        stats.append({"frame": name, "paint_px": int(paint.sum()), "road_px": int(road.sum()), "ms": round(ms, 1)})
    # Crop the rows well above the horizon (sky, buildings) from every frame: smaller, same detail.
    top = max(0, int(min(tops)) - 20)
    rows = [r[top:] for r in rows]
    for row, name in zip(rows, names, strict=True):
        x = row.shape[1] // 2 + 4
        cv2.putText(row, name, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"{out}: could not write the montage")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=250, help="synthetic frames to evaluate (0: none)")
    parser.add_argument("--seed", type=int, default=202, help="synthetic seed (report on one you did not tune on)")
    parser.add_argument("--size", type=parse_size, default=(480, 360), help="synthetic frame size WxH")
    parser.add_argument("--workers", type=int, default=1, help="processes generating synthetic frames")
    parser.add_argument("--tolerance", type=float, default=2.0, help="pixel tolerance for P@tol / R@tol")
    parser.add_argument("--json", type=Path, help="write the metrics (and montage statistics) here")
    parser.add_argument("--param", type=parse_param, action="append", default=[], metavar="KEY=JSON",
                        help="labeller keyword argument, e.g. --param rel_contrast=0.25 (repeatable)")  # fmt: skip
    parser.add_argument("--camvid-montage", type=Path, help="write a CamVid overlay montage PNG here")
    parser.add_argument("--camvid-root", type=Path, default=SHARED_DATA / "camvid")
    parser.add_argument("--camvid-split", default="val")
    parser.add_argument("--camvid-frames", default=",".join(MONTAGE_FRAMES), help="comma-separated frame names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = dict(args.param)
    report: dict = {"params": params}

    if args.n > 0:
        samples, skipped = synthetic_samples(args.n, args.seed, args.size, args.workers)
        result = evaluate_autolabel(samples, tolerance_px=args.tolerance, params=params)
        result.update(seed=args.seed, requested_frames=args.n, size=list(args.size), skipped_frames=skipped)
        print(f"synthetic seed {args.seed}: {len(samples)} frames of {args.n} ({len(skipped)} not generated)")
        print(format_table(result))
        report["synthetic"] = result
    if args.camvid_montage:
        names = [n.strip() for n in args.camvid_frames.split(",") if n.strip()]
        stats = camvid_montage(args.camvid_root, args.camvid_split, names, args.camvid_montage, params)
        print(f"wrote {args.camvid_montage} ({len(stats)} CamVid {args.camvid_split} frames)")
        for s in stats:
            print(f"  {s['frame']}: {s['paint_px']} paint px = {s['paint_px'] / max(s['road_px'], 1):.1%} of road")
        report["camvid_montage"] = {"path": str(args.camvid_montage), "frames": stats}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(nan_to_null(report), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
