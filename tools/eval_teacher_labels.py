"""Precision and recall of teacher labels at fused-score thresholds, to choose `perception label`'s thresholds.

    python tools/eval_teacher_labels.py --data camvid:../shared/data/camvid --split val

Runs the teachers exactly as ``perception label`` does (each teacher's score floor 0.05, WBF at IoU 0.55)
over a labelled dataset and prints, per class, the precision and recall at IoU 0.5 of the fused boxes whose
score is at least each threshold (raw, not interpolated; counts over the whole split). Against CamVid's
component boxes (a row of touching cars is one box) the precision of car and pedestrian labels is a lower
bound: a correct box on one car of a row counts as a false positive there.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np

from perception.data.registry import build_dataset, parse_data_spec
from perception.eval.evaluate import evaluate
from perception.eval.report import nan_to_null
from perception.teachers.detectors import TEACHERS, build_teacher
from perception.teachers.ensemble import TeacherEnsemble
from perception.teachers.label import TEACHER_SCORE_FLOOR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="KIND:PATH of a dataset with boxes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--thresholds", default="0.15,0.25,0.3,0.4,0.5,0.6")
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)

    kind, root = parse_data_spec(args.data)
    dataset = build_dataset(kind, root, split=args.split)
    teachers = [
        build_teacher(n, threads=1, score_threshold=TEACHER_SCORE_FLOOR, tta=args.tta) for n in args.teachers.split(",")
    ]
    ensemble = TeacherEnsemble(teachers, skip_box_thr=TEACHER_SCORE_FLOOR)
    result = evaluate(ensemble, dataset, progress=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    table: dict = {"data": args.data, "split": args.split, "teachers": list(ensemble.names), "classes": {}}
    print(f"{ensemble.name} on {args.data} {args.split} ({int(result.metrics.get('frames', 0))} frames), IoU 0.5")
    for name, curve in zip(result.detection.class_names, result.detection.pr_curves, strict=True):
        ap = result.metrics.get(f"det.ap50.{name}", float("nan"))
        rows = {}
        for t in thresholds:
            k = np.flatnonzero(curve.scores >= t)
            if len(k):
                rows[t] = {
                    "precision": float(curve.precision[k[-1]]),
                    "recall": float(curve.recall[k[-1]]),
                    "boxes": len(k),
                }
            else:
                rows[t] = {"precision": float("nan"), "recall": 0.0, "boxes": 0}
        table["classes"][name] = {"ap50": ap, "at": rows}
        cells = " | ".join(f">={t}: P {r['precision']:.2f} R {r['recall']:.2f} ({r['boxes']})" for t, r in rows.items())
        print(f"{name:<13} AP50 {ap:.3f} | {cells}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(nan_to_null(table), f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
