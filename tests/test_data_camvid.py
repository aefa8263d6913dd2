"""CamVid loader: hand-built tiny folders with hand-computed boxes, bad input, and the real data when present."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from perception.data.base import SkipLog, iter_samples
from perception.data.camvid import CamVidDataset
from perception.data.classmap import class_map_from_dict
from perception.data.sample import IGNORE, DatasetError
from perception.errors import ConfigError

H, W = 12, 16


def camvid_mask() -> np.ndarray:
    """Label values: sky 0 everywhere, road 3 in rows 8-11, unlabelled 11 at (0, 0),
    car 8: a 3x3 block (rows 1-3, cols 1-3) and, touching it diagonally, a 2x2 block (rows 4-5, cols 4-5)
    -> ONE component; a separate car 2x3 (rows 1-2, cols 10-12); pedestrian 9: one pixel (row 6, col 8);
    bicyclist 10: rows 5-7, col 14 (3 px); SignSymbol 6: 2x2 at rows 0-1, cols 6-7."""
    m = np.zeros((H, W), np.uint8)
    m[8:12, :] = 3
    m[0, 0] = 11
    m[1:4, 1:4] = 8
    m[4:6, 4:6] = 8
    m[1:3, 10:13] = 8
    m[6, 8] = 9
    m[5:8, 14] = 10
    m[0:2, 6:8] = 6
    return m


def make_camvid(root: Path, splits=("train", "val"), n: int = 2, mask: np.ndarray | None = None) -> Path:
    mask = camvid_mask() if mask is None else mask
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            image = np.full((H, W, 3), 40 * i, np.uint8)
            cv2.imwrite(str(root / split / f"f{i}.png"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"f{i}.png"), mask)
    return root


@pytest.fixture()
def camvid_root(tmp_path) -> Path:
    return make_camvid(tmp_path / "camvid")


def test_lists_splits_and_names(camvid_root):
    ds = CamVidDataset(camvid_root, split="val")
    assert len(ds) == 2
    assert ds.names == ["val/f0.png", "val/f1.png"]
    assert ds.kind == "camvid"
    assert ds.seg_classes == ("background", "drivable", "lane")
    assert ds.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign")


def test_seg_mapping_and_lane_flag(camvid_root):
    s = CamVidDataset(camvid_root)[1]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    assert int(s.image[0, 0, 0]) == 40
    expected = np.zeros((H, W), np.uint8)
    expected[8:12, :] = 1
    expected[0, 0] = IGNORE
    np.testing.assert_array_equal(s.seg, expected)
    assert s.lane_labelled is False
    assert s.name == "train/f1.png"


def test_boxes_from_components_by_hand(camvid_root):
    s = CamVidDataset(camvid_root, min_area=1)[0]
    # class order of the class map (car, pedestrian, cyclist, sign), then components in scan order
    np.testing.assert_array_equal(
        s.boxes,
        np.array(
            [
                [1, 1, 6, 6],  # the two touching cars merged into one box (the documented caveat)
                [10, 1, 13, 3],
                [8, 6, 9, 7],  # pedestrian: one pixel -> 1x1 box with exclusive edges
                [14, 5, 15, 8],
                [6, 0, 8, 2],
            ],
            np.float32,
        ),
    )
    assert s.labels.tolist() == [0, 0, 1, 2, 3]
    assert s.labels.dtype == np.int64 and s.boxes.dtype == np.float32
    assert not s.ignore.any()
    assert "touching objects" in s.meta["boxes_from"]
    assert s.meta["image_path"].endswith("train/f0.png")
    assert s.meta["mask_path"].endswith("trainannot/f0.png")


def test_min_area_drops_small_components(camvid_root):
    # areas: merged car 13, other car 6, pedestrian 1, bicyclist 3, sign 4
    s = CamVidDataset(camvid_root, min_area=5)[0]
    assert s.labels.tolist() == [0, 0]
    s = CamVidDataset(camvid_root)[0]  # default 20 px: none of these tiny blobs
    assert s.boxes.shape == (0, 4) and s.labels.shape == (0,)


def test_missing_test_split_lists_found_splits(camvid_root):
    with pytest.raises(DatasetError, match=r"no CamVid split 'test' \(splits found: \['train', 'val'\]"):
        CamVidDataset(camvid_root, split="test")


def test_missing_root_and_empty_split(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: CamVid root folder not found"):
        CamVidDataset(tmp_path / "nowhere")
    (tmp_path / "c" / "train").mkdir(parents=True)
    (tmp_path / "c" / "trainannot").mkdir()
    with pytest.raises(DatasetError, match=r"train: no \.png images"):
        CamVidDataset(tmp_path / "c")


def test_split_without_annot_folder_is_not_a_split(tmp_path):
    (tmp_path / "c" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"splits found: \[\]"):
        CamVidDataset(tmp_path / "c")


def test_corrupt_image_names_file_and_skip_counts_it(camvid_root):
    bad = camvid_root / "train" / "f1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = CamVidDataset(camvid_root)
    with pytest.raises(DatasetError, match=r"f1\.png: cannot decode image"):
        ds[1]
    skipped = SkipLog()
    samples = list(iter_samples(ds, "skip", skipped))
    assert [s.name for s in samples] == ["train/f0.png"]
    assert skipped.total == 1


def test_missing_mask_names_file(camvid_root):
    (camvid_root / "trainannot" / "f0.png").unlink()
    with pytest.raises(DatasetError, match=r"trainannot/f0\.png: label image not found"):
        CamVidDataset(camvid_root)[0]


def test_mask_size_mismatch_names_both_sizes(camvid_root):
    cv2.imwrite(str(camvid_root / "trainannot" / "f0.png"), np.zeros((10, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"f0\.png: label is 16x10 but its image .*f0\.png is 16x12"):
        CamVidDataset(camvid_root)[0]


def test_value_outside_class_map_is_an_error(camvid_root):
    mask = camvid_mask()
    mask[3, 3] = 17
    cv2.imwrite(str(camvid_root / "trainannot" / "f0.png"), mask)
    with pytest.raises(DatasetError, match=r"f0\.png: mask values \[17\] are not in the class map"):
        CamVidDataset(camvid_root)[0]


def test_colour_mask_is_an_error(camvid_root):
    cv2.imwrite(str(camvid_root / "trainannot" / "f0.png"), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError, match="expected a one-channel label image, got 3 channels"):
        CamVidDataset(camvid_root)[0]


def test_custom_class_map_and_bad_det_keys(camvid_root):
    seg = {"values": {3: "drivable"}, "default": "background"}
    cm = class_map_from_dict({"seg": seg, "det": {"classes": {8: "car"}}})
    s = CamVidDataset(camvid_root, class_map=cm, min_area=1)[0]
    assert s.labels.tolist() == [0, 0]
    assert s.seg[0, 0] == 0  # 11 -> default background in this map
    assert s.lane_labelled is True  # the map's lane_labelled default (lane is a seg class)
    bad = class_map_from_dict({"det": {"classes": {"car": "car"}}}, source="x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: det.classes key 'car' must be a label value"):
        CamVidDataset(camvid_root, class_map=bad)
    with pytest.raises(ValueError, match="bad_boxes"):
        CamVidDataset(camvid_root, bad_boxes="ignore")


CAMVID = SHARED_DATA / "camvid"


def require_camvid() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"real CamVid not found at {CAMVID} (set PERCEPTION_SHARED_DATA)")
    return CAMVID


def test_real_camvid():
    root = require_camvid()
    train, val = CamVidDataset(root, "train"), CamVidDataset(root, "val")
    assert (len(train), len(val)) == (367, 101)
    with pytest.raises(DatasetError, match="splits found: \\['train', 'val'\\]"):
        CamVidDataset(root, "test")
    first = train[0]
    assert first.image.shape == (360, 480, 3) and first.seg.shape == (360, 480)
    n_boxes = 0
    for i in range(0, len(val), 10):
        s = val[i]
        assert set(np.unique(s.seg).tolist()) <= {0, 1, 255}
        assert not s.lane_labelled
        n_boxes += len(s.boxes)
        assert ((s.boxes[:, 2:] > s.boxes[:, :2]).all()) and (s.boxes[:, 2] <= 480).all()
    assert n_boxes > 0


def test_lane_autolabel_marks_paint_inside_road_only():
    """Real CamVid val frames: auto-labelled paint becomes lane (2), only on Road pixels, positives only."""
    root = SHARED_DATA / "camvid"
    if not root.is_dir():
        pytest.skip(f"CamVid not found at {root}")
    plain = CamVidDataset(root, "val")
    auto = CamVidDataset(root, "val", lane_autolabel=True)
    lane_px = 0
    for i in (0, 50):
        a, b = plain[i], auto[i]
        assert not b.lane_labelled and "positives only" in b.meta["lane_labels"]
        assert (a.seg != 2).all()
        changed = a.seg != b.seg
        assert (a.seg[changed] == 1).all() and (b.seg[changed] == 2).all()
        lane_px += int(changed.sum())
        assert changed.sum() < 0.1 * (a.seg == 1).sum()  # paint is a small part of the road
    assert lane_px > 100


def test_lane_autolabel_needs_a_lane_class(camvid_root):
    cm = class_map_from_dict(
        {
            "seg_classes": ["background", "drivable"],
            "seg": {"values": {3: "drivable", 11: "ignore"}, "default": "background"},
        }
    )
    with pytest.raises(ValueError, match="lane"):
        CamVidDataset(camvid_root, "train", class_map=cm, lane_autolabel=True)
