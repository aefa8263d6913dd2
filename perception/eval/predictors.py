"""Predictors ``perception eval`` can score: our model through the runtime pipeline, or a peer.

``build_predictor(spec)`` takes a model file (.onnx or .pt: our pipeline, exactly as ``perception run``
uses it), ``default`` (the shipped model), or a peer name: ``peer:twinlitenet``, ``peer:nanodet`` or
``peer:stack`` (both peers: TwinLiteNet for road and lanes, NanoDet-m for objects), or a COCO teacher
(boxes only, score threshold 0.001 unless ``--score``): ``teacher:yolox``, ``teacher:picodet``,
``teacher:yolofastest`` or ``teacher:ensemble`` (the three fused by WBF), each optionally ``+tta``
(``perception.teachers``).
"""

from __future__ import annotations

import numpy as np

from perception.errors import ConfigError
from perception.frames import Prediction

PEER_NAMES = ("peer:twinlitenet", "peer:nanodet", "peer:stack")


class PipelinePredictor:
    """Our model through ``perception.pipeline``: segmentation mapped back to frame pixels.

    Args:
        model: model file, or None for the shipped default model.
        score_threshold: host-side score threshold (None: the graph's own, ``contract.score_threshold``, so
            mAP sees every box the model ranks, not only those above its display threshold). Fused models
            ran NMS with the export threshold in the graph, so a lower value here cannot bring back boxes
            it cut.
        whole_ranking: False keeps the model's display threshold when ``score_threshold`` is None: what a
            run shows, for measures of found objects rather than of a ranking.
    """

    def __init__(
        self,
        model: str | None = None,
        score_threshold: float | None = None,
        threads: int = 0,
        pipeline=None,
        whole_ranking: bool = True,
    ):
        import dataclasses

        from perception.config import PipelineConfig
        from perception.pipeline import build_pipeline

        if pipeline is None:  # a ready pipeline: e.g. a network in training (perception.train.validate)
            cfg = PipelineConfig(model=model)
            cfg = dataclasses.replace(
                cfg,
                postprocess=dataclasses.replace(cfg.postprocess, score_threshold=score_threshold),
                backend=dataclasses.replace(cfg.backend, threads=threads),
                fusion=dataclasses.replace(cfg.fusion, enabled=False),  # frames are independent: no tracking
            )
            pipeline = build_pipeline(cfg)
            if score_threshold is None and whole_ranking:
                pipeline.keep_whole_ranking()
        self.pipeline = pipeline
        self.name = self.pipeline.contract.name
        self.seg_classes = tuple(self.pipeline.contract.seg_classes)
        self.det_classes = tuple(self.pipeline.contract.det_classes)

    def predict(self, image_bgr: np.ndarray) -> Prediction:
        from perception.frames import Frame

        result = self.pipeline(Frame(index=0, timestamp_s=0.0, image=image_bgr))
        seg = None if result.seg is None else result.letterbox.mask_to_frame(result.seg.class_ids)
        d = result.detections
        return Prediction(
            seg=seg,
            boxes=np.asarray(d.boxes_xyxy, np.float32).reshape(-1, 4),
            scores=np.asarray(d.scores, np.float32),
            labels=np.asarray(d.labels, np.int64),
        )


def build_predictor(spec: str, threads: int = 0, score_threshold: float | None = None, whole_ranking: bool = True):
    """A predictor with ``name``, ``seg_classes``, ``det_classes`` and ``predict(image_bgr) -> Prediction``.

    An empty class list means the predictor does not do that task (a segmentation-only or detection-only
    peer); ``evaluate`` then leaves that task's metrics out rather than scoring it as zero. Our models keep
    the graph's whole ranking (for mAP) unless ``whole_ranking`` is False (``PipelinePredictor``).
    """
    from perception import peers

    if spec.startswith("teacher:"):
        from perception.teachers.ensemble import build_teacher_predictor

        return build_teacher_predictor(spec, threads=threads, score_threshold=score_threshold)
    if spec.startswith("peer:"):
        if spec not in PEER_NAMES:
            raise ConfigError(f"unknown peer {spec!r} (valid: {', '.join(PEER_NAMES)})")
        kind = spec.split(":", 1)[1]
        model = {"twinlitenet": peers.TwinLiteNet, "nanodet": peers.NanoDet, "stack": peers.PeerStack}[kind](
            threads=threads
        )
        # A single-task peer has no classes for the other task: that task is then not scored (not zero).
        model.seg_classes = ("background", "drivable", "lane") if kind != "nanodet" else ()
        model.det_classes = peers.DET_CLASSES if kind != "twinlitenet" else ()
        return model
    model = None if spec == "default" else spec
    return PipelinePredictor(model, score_threshold=score_threshold, threads=threads, whole_ranking=whole_ranking)
