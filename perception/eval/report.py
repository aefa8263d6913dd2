"""Reports people read: report.md with the metric tables, and PNG plots drawn with OpenCV (no plotting
library on the runtime path): precision-recall curves per class, the confusion matrix, the worst frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from perception.eval.evaluate import format_metric
from perception.viz import det_color

PLOT_BG = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)


def _text(img, s: str, org, scale=0.45, color=INK, thickness=1) -> None:
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def plot_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, size=(640, 480)) -> np.ndarray:
    """uint8 BGR plot of precision (y) against recall (x), one line per class, both axes 0..1."""
    w, h = size
    img = np.full((h, w, 3), PLOT_BG, np.uint8)
    x0, y0, x1, y1 = 60, 30, w - 20, h - 50
    for t in np.linspace(0, 1, 6):
        gx = int(x0 + t * (x1 - x0))
        gy = int(y1 - t * (y1 - y0))
        cv2.line(img, (gx, y0), (gx, y1), GRID, 1)
        cv2.line(img, (x0, gy), (x1, gy), GRID, 1)
        _text(img, f"{t:.1f}", (gx - 10, y1 + 18), 0.4)
        _text(img, f"{t:.1f}", (x0 - 35, gy + 5), 0.4)
    cv2.rectangle(img, (x0, y0), (x1, y1), INK, 1)
    _text(img, "recall", ((x0 + x1) // 2 - 20, h - 12), 0.5)
    _text(img, "precision", (5, y0 - 10), 0.5)
    _text(img, title, (x0 + 80, y0 - 10), 0.5)
    for k, (name, (recall, precision)) in enumerate(curves.items()):
        color = det_color(name, k)
        if len(recall):
            pts = np.stack([x0 + np.asarray(recall) * (x1 - x0), y1 - np.asarray(precision) * (y1 - y0)], 1)
            cv2.polylines(img, [np.round(pts * 4).astype(np.int32)], False, color, 2, cv2.LINE_AA, 2)
        cv2.line(img, (x1 - 150, y0 + 20 + 20 * k), (x1 - 125, y0 + 20 + 20 * k), color, 3)
        _text(img, name, (x1 - 118, y0 + 25 + 20 * k), 0.45)
    return img


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], cell: int = 110) -> np.ndarray:
    """uint8 BGR heat map of a confusion matrix normalised per target row (rows: target, cols: prediction)."""
    n = len(class_names)
    pad_l, pad_t = 120, 60
    img = np.full((pad_t + n * cell + 20, pad_l + n * cell + 20, 3), PLOT_BG, np.uint8)
    rows = matrix.sum(1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float64), where=rows > 0)
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            shade = int(255 - 200 * v)
            x, y = pad_l + j * cell, pad_t + i * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), GRID, 1)
            _text(img, f"{v:.3f}", (x + 25, y + cell // 2 + 5), 0.5, (255, 255, 255) if v > 0.6 else INK)
        _text(img, class_names[i][:12], (5, pad_t + i * cell + cell // 2 + 5), 0.45)
        _text(img, class_names[i][:12], (pad_l + i * cell + 10, pad_t - 10), 0.45)
    _text(img, "target \\ predicted (row-normalised)", (5, 20), 0.5)
    return img


def write_report(
    out: Path,
    results: dict[str, dict[str, float]],
    data: str,
    split: str,
    seg_classes: Sequence[str],
    det_classes: Sequence[str],
    worst: dict[str, list[dict]] | None = None,
) -> Path:
    """report.md: segmentation, detection and speed tables, one column per model, links to the plots."""
    names = list(results)
    lines = [f"# Evaluation on {data} ({split})", ""]
    lines += [
        "Metrics over the whole split (one confusion matrix, COCO-style detection matching; never averaged",
        "per image). `–`: undefined (no ground truth and no prediction of that class).",
        "",
    ]

    def table(title: str, keys: list[str]) -> None:
        keys = [k for k in keys if any(k in results[n] for n in names)]
        if not keys:
            return
        lines.extend([f"## {title}", "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"])
        for k in keys:
            lines.append(
                f"| `{k}` | " + " | ".join(format_metric(results[n].get(k), missing="–") for n in names) + " |"
            )
        lines.append("")

    table(
        "Segmentation",
        [f"seg.iou.{c}" for c in seg_classes]
        + [f"seg.dice.{c}" for c in seg_classes]
        + ["seg.miou", "seg.miou_fg", "seg.mdice", "seg.pixel_acc", "lanes.iou", "seg.hood_road_frac"]
        + [f"seg.boundary.lane.{k}" for k in ("precision", "recall", "f1")],
    )
    table(
        "Detection",
        ["det.map", "det.map50", "det.map75", "det.map_small", "det.map_medium", "det.map_large", "det.ar100"]
        + [f"det.ap50.{c}" for c in det_classes]
        + [f"det.best_f1_score.{c}" for c in det_classes],
    )
    table(
        "Video stability (clips)",
        [
            "video.mask_iou.drivable",
            "video.mask_iou.lane",
            "video.box_jitter",
            "video.box_dropouts",
            "video.box_triples",
        ],
    )
    table(
        "Lanes (TuSimple format)",
        ["lanes.tusimple_acc", "lanes.fp_rate", "lanes.fn_rate", "lanes.fp_rate_pooled", "lanes.fn_rate_pooled"]
        + ["lanes.culane_f1", "lanes.culane_precision", "lanes.culane_recall"]
        + ["lanes.frames", "lanes.frames_rejected", "lanes.frames_over_200ms", "lanes.gt_lanes", "lanes.pred_lanes"],
    )
    table("Speed and coverage", ["speed.fps", "speed.ms_median", "frames", "skipped"])
    for n in names:
        folder = out if len(names) == 1 else out / safe_name(n)
        rel = folder.relative_to(out)
        pics = [p for p in ("pr_curves.png", "confusion.png", "worst_frames.png") if (folder / p).is_file()]
        if pics:
            lines += [f"## Plots: {n}", ""] + [f"![{p}]({(rel / p).as_posix()})" for p in pics] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def eval_table_keys(results: dict[str, dict[str, float]]) -> list[str]:
    """The metrics the eval table shows: every model's keys, in order, of the headline kinds."""
    prefixes = ("seg.iou.", "seg.dice.", "seg.miou", "seg.hood", "lanes.", "det.map", "det.ap50.")
    prefixes += ("video.", "speed.fps")
    return [
        k
        for k in dict.fromkeys(k for metrics in results.values() for k in metrics)
        if k.startswith(prefixes) or k in ("frames", "skipped")
    ]


def metrics_payload(
    model: str, data: str, split: str, result, setup: dict | None = None, files: dict | None = None
) -> dict:
    """The ``metrics.json`` of one model scored on one dataset (``perception eval``, its TuSimple lanes and
    ``perception fleet eval``): what was scored on what, the metrics (``result``: an ``EvalResult``), the
    samples skipped and the frames. ``setup`` (how it ran: workers, shard size) goes before the metrics,
    ``files`` (written beside it: predictions) after them."""
    return {
        "model": model,
        "data": data,
        "split": split,
        **(setup or {}),
        "metrics": result.metrics,
        **(files or {}),
        "skipped": result.skipped.examples,
        "frames": result.frames,
    }


def write_metrics_json(folder: Path, payload: dict) -> Path:
    """``folder/metrics.json``: ``payload`` as strict JSON (NaN as null)."""
    path = Path(folder) / "metrics.json"
    path.write_text(json.dumps(nan_to_null(payload), indent=2) + "\n")
    return path


def nan_to_null(value):
    """Strict JSON: undefined metrics (NaN, e.g. AP of a class with no ground truth) become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_null(v) for v in value]
    return value


def safe_name(spec: str) -> str:
    """A folder name for a model spec (path or peer name)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(spec).name) or "model"


def write_eval_plots(folder: Path, result, predictor, dataset, n_worst: int = 4, show_score: float = 0.3) -> None:
    """pr_curves.png, confusion.png and worst_frames.png (lowest per-frame mIoU: labels | prediction, boxes
    scoring at least ``show_score``: mAP is computed from every box, but a picture of them all is noise)."""
    from perception.data.overlay import draw_labels
    from perception.data.sample import Sample

    if result.detection is not None:
        curves = {
            n: (c.recall, c.precision)
            for n, c in zip(result.detection.class_names, result.detection.pr_curves, strict=True)
            if len(c.recall) and not np.isnan(c.recall).all()
        }
        cv2.imwrite(str(folder / "pr_curves.png"), plot_pr_curves(curves, "precision-recall at IoU 0.5"))
    if result.confusion is not None and result.confusion.sum():
        cv2.imwrite(str(folder / "confusion.png"), plot_confusion(result.confusion, dataset.seg_classes))
    scored = [f for f in result.frames if "seg_iou" in f and not math.isnan(f["seg_iou"])]
    rows = []
    for f in sorted(scored, key=lambda f: f["seg_iou"])[:n_worst]:
        truth = dataset[f["index"]]
        pred = predictor.predict(truth.image)
        shown = Sample(
            truth.image,
            truth.name,
            pred.seg,
            True,
            np.asarray(pred.boxes, np.float32).reshape(-1, 4),
            np.asarray(pred.labels, np.int64),
            np.zeros(len(pred.boxes), bool),
        )
        a, b = draw_labels(truth, lanes=False), draw_labels(shown, lanes=False)
        size = (400, int(round(a.shape[0] * 400 / a.shape[1])))
        row = np.hstack(
            [cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)]
        )
        _text(row, f"{truth.name}  mIoU {f['seg_iou']:.3f}   (labels | prediction)", (5, 15), 0.45, (255, 255, 255))
        rows.append(row)
    if rows:
        cv2.imwrite(str(folder / "worst_frames.png"), np.vstack(rows))
