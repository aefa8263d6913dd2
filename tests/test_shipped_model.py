"""The shipped default model: small, self-describing, trained, and sensible on a real frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_real_clip

from perception.config import PipelineConfig
from perception.frames import Frame
from perception.pipeline import build_pipeline, default_model_path


def shipped(variant: str) -> str:
    """The shipped FP32 default model, or its INT8 version beside it."""
    path = default_model_path()
    return str(path if variant == "fp32" else path.with_name("default.int8.onnx"))


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_default_model_is_small_and_trained(variant):
    path = shipped(variant)
    assert Path(path).stat().st_size <= 10 * 1024 * 1024, "the shipped model must stay under 10 MB"
    contract = build_pipeline(PipelineConfig(model=path)).contract
    assert contract.name.startswith("mtl-") and contract.trained_on, "placeholder or untrained model shipped"
    assert contract.seg_classes == ("background", "drivable", "lane")
    assert contract.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign")
    if variant == "int8":
        assert contract.name.endswith("-int8") and contract.extra["quantization"]["weight_type"] == "int8"


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_default_model_sees_the_road_ahead_on_the_real_clip(variant):
    """Frame 100 of the highway clip: the patch just ahead of the bonnet is road (drivable or paint)."""
    import cv2

    cap = cv2.VideoCapture(str(require_real_clip()))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, image = cap.read()
    cap.release()
    assert ok
    result = build_pipeline(PipelineConfig(model=shipped(variant)))(Frame(index=100, timestamp_s=4.0, image=image))
    seg = result.letterbox.mask_to_frame(result.seg.class_ids)
    h, w = seg.shape
    ahead = seg[int(0.75 * h) : int(0.9 * h), int(0.4 * w) : int(0.6 * w)]
    sky = seg[: int(0.3 * h)]
    assert np.isin(ahead, (1, 2)).mean() > 0.8
    assert np.isin(sky, (1, 2)).mean() < 0.05
