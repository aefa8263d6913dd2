"""Peer adapters (TwinLiteNet, NanoDet-m): outputs in frame pixels and our classes, checked on a real frame."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from perception.errors import ModelError

PEERS = SHARED_DATA.parent / "peers"


@pytest.fixture(scope="module")
def stack():
    if not (PEERS / "nanodet_m_coco_416.onnx").is_file() or not (SHARED_DATA / "camvid").is_dir():
        pytest.skip(f"peer models or CamVid not found under {SHARED_DATA.parent}")
    from perception.peers import PeerStack

    return PeerStack(PEERS, threads=1)


def test_peers_predict_road_and_cars_where_camvid_has_them(stack):
    from perception.data.camvid import CamVidDataset
    from perception.postprocess.nms import box_iou

    sample = CamVidDataset(SHARED_DATA / "camvid", "val")[0]
    out = stack.predict(sample.image)
    h, w = sample.image.shape[:2]
    assert out.seg.shape == (h, w) and set(np.unique(out.seg)) <= {0, 1, 2}
    road_pred = out.seg > 0
    road_true = sample.seg == 1
    valid = sample.seg != 255
    iou = (road_pred & road_true & valid).sum() / ((road_pred | road_true) & valid).sum()
    assert iou > 0.6  # TwinLiteNet, never trained on CamVid, still finds most of the road
    assert (out.boxes[:, 0] >= -1).all() and (out.boxes[:, 2] <= w + 1).all()
    cars_true = sample.boxes[sample.labels == 0]
    cars_pred = out.boxes[(out.labels == 0) & (out.scores > 0.3)]
    assert len(cars_true) and len(cars_pred)
    assert box_iou(cars_true, cars_pred).max() > 0.5  # the big car in front is found where it is


def test_missing_peer_model_is_a_clear_error(tmp_path):
    from perception.peers import peer_path

    with pytest.raises(ModelError, match="peer model not found"):
        peer_path("nanodet_m_coco_416.onnx", tmp_path)


def test_build_predictor_for_our_model_and_peers(fused_model, stack):
    from perception.data.camvid import CamVidDataset
    from perception.errors import ConfigError
    from perception.eval.predictors import build_predictor

    image = CamVidDataset(SHARED_DATA / "camvid", "val")[0].image
    ours = build_predictor(str(fused_model), threads=1)
    out = ours.predict(image)
    assert out.seg.shape == image.shape[:2] and out.seg.dtype == np.uint8
    assert out.boxes.shape[1] == 4 and len(out.boxes) == len(out.scores) == len(out.labels)
    assert ours.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign")
    with pytest.raises(ConfigError, match="unknown peer"):
        build_predictor("peer:yolo")
