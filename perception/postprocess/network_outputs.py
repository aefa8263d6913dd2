"""Model outputs (by the contract's names) → per-image SegMap and Detections, in input pixels.

Fused models already ran decoding and NMS in the graph: their padded ``dets`` rows are cut at
``num_dets``. Raw models are decoded and NMS'd here (``decode.py``, ``nms.py``). Mapping to frame pixels
is the pipeline's job, through each frame's Letterbox.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.frames import Detections, SegMap
from perception.postprocess.decode import decode_grid, select_detections
from perception.runtime.contract import ModelContract


@dataclass(frozen=True)
class DetectionSettings:
    """Host-side selection. A fused model's graph already applied its own export thresholds: a higher
    ``score_threshold`` still filters here, a lower one cannot bring back what the graph dropped. The
    default is the contract's display threshold when it has one (a graph that keeps a low-scoring tail for
    mAP), else its score threshold."""

    score_threshold: float
    iou_threshold: float
    max_dets: int
    class_agnostic: bool = False

    @classmethod
    def from_contract(
        cls,
        contract: ModelContract,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_dets: int | None = None,
        class_agnostic: bool = False,
    ) -> DetectionSettings:
        return cls(
            score_threshold=contract.host_score_threshold if score_threshold is None else float(score_threshold),
            iou_threshold=contract.iou_threshold if iou_threshold is None else float(iou_threshold),
            max_dets=contract.max_dets if max_dets is None else int(max_dets),
            class_agnostic=class_agnostic,
        )


def unpack_outputs(
    outputs: dict[str, np.ndarray], contract: ModelContract, settings: DetectionSettings
) -> list[tuple[SegMap | None, Detections]]:
    """Split batched outputs into one (SegMap or None, Detections in input pixels) per image."""
    seg = outputs.get("seg")
    n = next(iter(outputs.values())).shape[0]
    if contract.det_classes and contract.format == "fused":
        dets, num = outputs["dets"], outputs["num_dets"]
        per_image = []
        for i in range(n):
            rows = dets[i, : int(num[i])]
            rows = rows[rows[:, 4] > settings.score_threshold][: settings.max_dets]
            per_image.append(Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int32)))
    elif contract.det_classes:
        boxes, scores = decode_grid(
            [outputs[f"cls_s{s}"] for s in contract.strides],
            [outputs[f"box_s{s}"] for s in contract.strides],
            contract.strides,
            contract.box_encoding,
        )
        per_image = [
            select_detections(
                boxes[i],
                scores[i],
                settings.score_threshold,
                settings.iou_threshold,
                settings.max_dets,
                class_agnostic=settings.class_agnostic,
            )
            for i in range(n)
        ]
    else:
        per_image = [Detections.empty() for _ in range(n)]
    segs = [SegMap(seg[i], contract.seg_classes) if seg is not None else None for i in range(n)]
    return list(zip(segs, per_image, strict=True))
