"""Compare lane-line labellers on frames with true lane masks: TwinLiteNet+ against the paint auto-labeller.

    perception synth --n 60 --seed 4242 --val 1.0 --out /tmp/synth_lanes
    python tools/eval_lane_teacher.py --data synthetic:/tmp/synth_lanes --split val --json /tmp/lane_teacher.json

Both are scored as ``perception.data.autolabel.paint_counts`` scores the auto-labeller (docs/autolabel.md):
pixel counts summed over all frames, only pixels of the true road (drivable or lane, ignore excluded), exact
precision / recall / IoU of the lane class and precision / recall within 2 px. The auto-labeller gets the
TRUE road mask (as it does on CamVid, where the road is labelled); TwinLiteNet+ sees only the image, so
"on road" is its lane pixels on the true road (what ``perception label --lanes`` writes on a frame with a
road mask), and "anywhere" also counts its lane pixels off the true road as false positives (what it
writes on a frame without a mask). "autolabel on twinlitenetplus road" runs the auto-labeller inside
TwinLiteNet+'s drivable area instead of the true road (a labeller for frames without any mask). The
drivable IoU of each TwinLiteNet+ variant (its drivable or lane pixels against true drivable or lane,
ignore excluded) is printed below the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np

from perception.data.autolabel import autolabel_lane_paint, paint_counts, summarize_counts
from perception.data.registry import build_dataset, parse_data_spec
from perception.data.sample import IGNORE
from perception.eval.report import nan_to_null
from perception.teachers.lanes import TwinLiteNetPlus

LANE = 2  # lane class id of the project's seg classes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="KIND:PATH of frames with lane labels, e.g. synthetic:DIR")
    parser.add_argument("--split", default="val")
    parser.add_argument("--variants", default="small,nano", help="TwinLiteNet+ variants (default small,nano)")
    parser.add_argument("--tolerance", type=float, default=2.0, help="pixel tolerance for P@tol / R@tol")
    parser.add_argument("--json", help="write the metrics here")
    args = parser.parse_args(argv)

    kind, root = parse_data_spec(args.data)
    dataset = build_dataset(kind, root, split=args.split)
    nets = {f"twinlitenetplus_{v}": TwinLiteNetPlus(variant=v, threads=1) for v in args.variants.split(",") if v}
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    anywhere: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds: dict[str, float] = defaultdict(float)
    road_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # intersection, union of the road
    first_net = next(iter(nets), None)
    frames = 0
    for sample in dataset:
        if sample.seg is None or not sample.lane_labelled:
            continue
        frames += 1
        seg = sample.seg
        road = ((seg == 1) | (seg == LANE)) & (seg != IGNORE)
        t0 = time.perf_counter()
        preds = {"autolabel (true road given)": autolabel_lane_paint(sample.image, road)}
        seconds["autolabel (true road given)"] += time.perf_counter() - t0
        valid = seg != IGNORE
        for name, net in nets.items():
            t0 = time.perf_counter()
            drivable, lane = net.masks(sample.image)
            preds[name] = lane
            net_seconds = time.perf_counter() - t0
            seconds[name] += net_seconds
            pred_road = (drivable | lane) & valid
            road_counts[name][0] += int((pred_road & road).sum())
            road_counts[name][1] += int((pred_road | road).sum())
            if name == first_net:
                key = f"autolabel on {name} road"
                t0 = time.perf_counter()
                preds[key] = autolabel_lane_paint(sample.image, drivable | lane)
                seconds[key] += time.perf_counter() - t0 + net_seconds  # the network's time included
        for name, pred in preds.items():
            for k, v in paint_counts(pred, seg, args.tolerance).items():
                totals[name][k] += v
            off_road = int((np.asarray(pred, bool) & ~road & (seg != IGNORE)).sum())
            anywhere[name]["off_road_px"] += off_road
    if not frames:
        raise SystemExit(f"{args.data} {args.split}: no frames with lane labels")
    report = {"data": args.data, "split": args.split, "frames": frames, "tolerance_px": args.tolerance, "labellers": {}}
    head = (
        f"{'labeller':<40} {'P':>6} {'R':>6} {'IoU':>6} {'P@tol':>6} {'R@tol':>6} {'P any':>6} {'IoU any':>7} {'ms':>6}"
    )
    print(f"{args.data} {args.split}: {frames} frames, lane pixels inside the true road\n{head}\n{'-' * len(head)}")
    for name, c in totals.items():
        m = summarize_counts(c)
        tp, fp_all = c["tp"], c["fp"] + anywhere[name]["off_road_px"]
        m["precision_anywhere"] = tp / (tp + fp_all) if tp + fp_all else float("nan")
        m["iou_anywhere"] = tp / (tp + fp_all + c["fn"]) if tp + fp_all + c["fn"] else float("nan")
        m["off_road_px"] = anywhere[name]["off_road_px"]
        m["ms_per_frame"] = 1000 * seconds[name] / frames
        report["labellers"][name] = m
        vals = " ".join(f"{m[k]:6.3f}" for k in ("precision", "recall", "iou", "precision_tol", "recall_tol"))
        print(f"{name:<40} {vals} {m['precision_anywhere']:6.3f} {m['iou_anywhere']:7.3f} {m['ms_per_frame']:6.1f}")
    for name, (inter, union) in road_counts.items():
        report["labellers"][name]["drivable_iou"] = inter / union if union else float("nan")
        print(f"{name} drivable IoU (drivable + lane vs the true road): {inter / union:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(nan_to_null(report), f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
