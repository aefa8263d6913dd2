"""Segmentation metrics accumulated over a whole dataset: IoU, Dice, precision, recall, accuracy.

Definitions (``C`` classes, the confusion matrix ``M`` is int64 [C, C], rows = target, columns = prediction,
summed over every pixel of every image whose target is not ``ignore_index``):

- ``TP_c = M[c, c]``, ``FP_c = sum_r M[r, c] - TP_c`` (predicted c, target other), ``FN_c = sum_k M[c, k] - TP_c``.
- ``IoU_c = TP / (TP + FP + FN)``; ``Dice_c = 2 TP / (2 TP + FP + FN)``; ``precision_c = TP / (TP + FP)``;
  ``recall_c = TP / (TP + FN)`` (the per-class accuracy).
- A class with neither target nor predicted pixels has IoU and Dice NaN and is left out of every mean
  (the usual choice, as in mmsegmentation and the Cityscapes scripts): it was neither present nor hallucinated,
  so it carries no evidence. Precision is NaN when nothing was predicted as the class, recall when the class
  has no target pixel.
- ``seg.miou`` / ``seg.mdice``: mean over classes with a defined IoU / Dice (present in target or prediction),
  background included; ``seg.miou_fg``: the same mean without class 0 (background).
- ``seg.pixel_acc = trace(M) / sum(M)``; ``seg.mean_acc``: mean recall over classes with target pixels;
  ``seg.fw_iou = sum_c (target pixels of c / all counted pixels) * IoU_c`` (frequency weighted IoU).
- ``seg.pixels``: counted pixels (``sum(M)``); ``seg.ignored``: target pixels equal to ``ignore_index``.

Dataset metrics are always computed from the summed matrix, never by averaging per-image or per-batch
ratios; ``merge`` adds two matrices exactly, so sharded evaluation equals a single pass.

Partial lane labels (CamVid): lane paint there is labelled as drivable road. Evaluate such samples with
``add(pred, target, merge_pred={lane_id: drivable_id})``: a prediction of lane on paint is counted as road,
so a correct lane prediction is not punished as a wrong road pixel, and the lane class is only scored on
samples that label it.

Thin structures (lane paint) also get a boundary-tolerant score, :class:`BoundaryAccumulator`.

numpy (+ OpenCV for the distance transform) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

IGNORE = 255


def _describe_values(values: np.ndarray, limit: int = 10) -> str:
    vals = [int(v) for v in np.unique(values)[:limit]]
    more = ", ..." if np.unique(values).size > limit else ""
    return "[" + ", ".join(str(v) for v in vals) + more + "]"


def _check_int_mask(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be an integer [H, W] class-id mask, got {arr.dtype} {list(arr.shape)}")
    return arr


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den as float64, NaN where den == 0 (no warnings)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN when there are none (no warnings)."""
    values = np.asarray(values, np.float64)
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


class ConfusionMatrix:
    """Accumulates an int64 [C, C] confusion matrix (rows = target, columns = prediction) over a dataset.

    Args:
        class_names: the C class names, index = class id; names become metric keys (``seg.iou.<name>``).
        ignore_index: target value excluded from every count (counted in ``seg.ignored``).
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = IGNORE) -> None:
        names = tuple(str(n) for n in class_names)
        if not names:
            raise ValueError("class_names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError(f"class_names must be unique, got {list(names)}")
        if 0 <= ignore_index < len(names):
            raise ValueError(f"ignore_index {ignore_index} collides with class id of {names[ignore_index]!r}")
        self.class_names = names
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((len(names), len(names)), np.int64)
        self.ignored = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def add(self, pred: np.ndarray, target: np.ndarray, merge_pred: Mapping[int, int] | None = None) -> None:
        """Count one image.

        Args:
            pred: integer [H, W] predicted class ids in [0, C) (e.g. the model's uint8 ``seg`` output).
            target: integer (uint8) [H, W] target class ids in [0, C), or ``ignore_index`` for unlabelled pixels.
            merge_pred: optional {predicted id: id it counts as}, applied to ``pred`` before counting (all
                keys at once, not chained). CamVid, whose paint is labelled road: ``{lane_id: drivable_id}``.

        Raises:
            ValueError: shapes differ, a prediction outside [0, C) (anywhere, ignored pixels included), a
                target outside [0, C) that is not ``ignore_index``, or a bad ``merge_pred`` id; the message
                names the offending values.
        """
        pred = _check_int_mask("pred", pred)
        target = _check_int_mask("target", target)
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: pred {list(pred.shape)}, target {list(target.shape)}")
        c = self.num_classes
        pred = pred.astype(np.int64)
        target = target.astype(np.int64)
        bad = (pred < 0) | (pred >= c)
        if bad.any():
            raise ValueError(f"prediction values outside [0, {c}): {_describe_values(pred[bad])}")
        if merge_pred:
            for src, dst in merge_pred.items():
                if not (0 <= int(src) < c and 0 <= int(dst) < c):
                    raise ValueError(f"merge_pred {{{src}: {dst}}} must map class ids in [0, {c})")
            lut = np.arange(c, dtype=np.int64)
            for src, dst in merge_pred.items():
                lut[int(src)] = int(dst)
            pred = lut[pred]
        ignored = target == self.ignore_index
        bad = ((target < 0) | (target >= c)) & ~ignored
        if bad.any():
            raise ValueError(
                f"target values outside [0, {c}) and not ignore ({self.ignore_index}): {_describe_values(target[bad])}"
            )
        valid = ~ignored
        idx = target[valid] * c + pred[valid]
        self.matrix += np.bincount(idx, minlength=c * c).reshape(c, c)
        self.ignored += int(ignored.sum())

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this one (exact); returns self. Class names and ignore must match."""
        if other.class_names != self.class_names or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge confusion matrices over {list(other.class_names)} (ignore {other.ignore_index}) "
                f"into {list(self.class_names)} (ignore {self.ignore_index})"
            )
        self.matrix += other.matrix
        self.ignored += other.ignored
        return self

    def reset(self) -> None:
        self.matrix[:] = 0
        self.ignored = 0

    def per_class(self) -> dict[str, np.ndarray]:
        """float64 [C] arrays ``iou``, ``dice``, ``precision``, ``recall`` and int64 [C] ``tp``, ``fp``, ``fn``."""
        m = self.matrix
        tp = np.diag(m).copy()
        fp = m.sum(axis=0) - tp
        fn = m.sum(axis=1) - tp
        return {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "iou": _div(tp, tp + fp + fn),
            "dice": _div(2 * tp, 2 * tp + fp + fn),
            "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn),
        }

    def compute(self) -> dict[str, float | int]:
        """Dataset metrics from the summed matrix; keys as in the module docstring (floats, NaN if undefined)."""
        pc = self.per_class()
        m = self.matrix
        total = int(m.sum())
        target_px = m.sum(axis=1)
        out: dict[str, float | int] = {}
        for key in ("iou", "dice", "precision", "recall"):
            for name, v in zip(self.class_names, pc[key], strict=True):
                out[f"seg.{key}.{name}"] = float(v)
        iou = pc["iou"]
        out["seg.pixel_acc"] = float(np.trace(m) / total) if total else float("nan")
        out["seg.mean_acc"] = _mean_defined(pc["recall"])
        out["seg.miou"] = _mean_defined(iou)
        out["seg.miou_fg"] = _mean_defined(iou[1:])
        out["seg.mdice"] = _mean_defined(pc["dice"])
        present = target_px > 0
        out["seg.fw_iou"] = float(np.sum(target_px[present] / total * iou[present])) if total else float("nan")
        out["seg.pixels"] = total
        out["seg.ignored"] = int(self.ignored)
        return out


def _within(mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """bool [H, W]: pixels whose Euclidean distance to the nearest True pixel of ``mask`` is <= tolerance."""
    if not mask.any():
        return np.zeros_like(mask)
    if tolerance_px < 1:
        return mask.copy()
    src = np.where(mask, 0, 1).astype(np.uint8)
    dist = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # exact Euclidean distances are square roots of integers: compare squared, rounded, against tol^2
    d2 = np.rint(dist.astype(np.float64) ** 2)
    return d2 <= tolerance_px * tolerance_px + 1e-9


class BoundaryAccumulator:
    """Tolerance-aware score for one thin class (lane paint), counts summed over images.

    For each image, with ``valid = target != ignore_index``, ``P = (pred == class_id) & valid`` and
    ``T = (target == class_id) & valid``, and ``dil_t(X)`` = pixels within Euclidean distance
    ``tolerance_px`` of a pixel of X (exact distance transform; tolerance 0 means X itself):

    - ``precision_tol = sum |P ∩ dil_t(T)| / sum |P|`` (predicted pixels near some target pixel),
    - ``recall_tol = sum |T ∩ dil_t(P)| / sum |T|`` (target pixels near some predicted pixel),
    - ``f1_tol = 2 p r / (p + r)``, ``iou_tol = f1_tol / (2 - f1_tol)``.

    The sums run over all images (never averaged per image). At tolerance 0, ``f1_tol`` is exactly the
    Dice and ``iou_tol`` exactly the IoU of the class. Undefined ratios are NaN (no predicted pixels for
    precision, no target pixels for recall; F1 / IoU NaN if either is NaN, 0 if both are 0).

    Args:
        class_id: the class scored; ``class_name`` names it in the keys (default: the id).
        tolerance_px: distance tolerance in pixels (>= 0).
    """

    def __init__(
        self, class_id: int, tolerance_px: float, class_name: str | None = None, ignore_index: int = IGNORE
    ) -> None:
        if tolerance_px < 0:
            raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
        self.class_id = int(class_id)
        self.tolerance_px = float(tolerance_px)
        self.class_name = str(class_id) if class_name is None else class_name
        self.ignore_index = int(ignore_index)
        self.pred_pixels = 0
        self.pred_matched = 0
        self.target_pixels = 0
        self.target_matched = 0

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Count one image; pred, target: integer [H, W] class-id masks of equal shape (target may hold ignore)."""
        pred = _check_int_mask("pred", pred)
        target = _check_int_mask("target", target)
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: pred {list(pred.shape)}, target {list(target.shape)}")
        valid = target != self.ignore_index
        p = (pred == self.class_id) & valid
        t = (target == self.class_id) & valid
        self.pred_pixels += int(p.sum())
        self.target_pixels += int(t.sum())
        self.pred_matched += int((p & _within(t, self.tolerance_px)).sum())
        self.target_matched += int((t & _within(p, self.tolerance_px)).sum())

    def merge(self, other: BoundaryAccumulator) -> BoundaryAccumulator:
        """Add ``other``'s counts (same class, tolerance and ignore); returns self."""
        if (other.class_id, other.tolerance_px, other.ignore_index) != (
            self.class_id,
            self.tolerance_px,
            self.ignore_index,
        ):
            raise ValueError("cannot merge boundary accumulators with different class, tolerance or ignore")
        self.pred_pixels += other.pred_pixels
        self.pred_matched += other.pred_matched
        self.target_pixels += other.target_pixels
        self.target_matched += other.target_matched
        return self

    def compute(self) -> dict[str, float | int]:
        """Keys ``seg.boundary.<name>.{precision,recall,f1,iou}`` (floats) and ``.tolerance_px``."""
        p = float(_div(self.pred_matched, self.pred_pixels))
        r = float(_div(self.target_matched, self.target_pixels))
        if np.isnan(p) or np.isnan(r):
            f1 = float("nan")
        elif p + r == 0:
            f1 = 0.0
        else:
            f1 = 2 * p * r / (p + r)
        iou = f1 / (2 - f1) if not np.isnan(f1) else float("nan")
        k = f"seg.boundary.{self.class_name}"
        return {
            f"{k}.precision": p,
            f"{k}.recall": r,
            f"{k}.f1": f1,
            f"{k}.iou": iou,
            f"{k}.tolerance_px": self.tolerance_px,
        }


def boundary_iou(
    pred: np.ndarray, target: np.ndarray, class_id: int, tolerance_px: float, ignore_index: int = IGNORE
) -> dict[str, float | int]:
    """Tolerant precision / recall / F1 / IoU of one image (see :class:`BoundaryAccumulator`)."""
    acc = BoundaryAccumulator(class_id, tolerance_px, ignore_index=ignore_index)
    acc.add(pred, target)
    return acc.compute()
