"""BDD100K loader: every combination of det JSON / drivable mask / lane mask, the lane bit encoding, bad JSON."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.data.bdd100k import Bdd100kDataset, lane_pixels
from perception.data.classmap import class_map_from_dict
from perception.data.sample import IGNORE, DatasetError
from perception.errors import ConfigError

H, W = 12, 16

CROWD = {"occluded": False, "truncated": True, "crowd": True}
A_LABELS = [
    {"id": "1", "category": "car", "box2d": {"x1": 1.5, "y1": 2, "x2": 5, "y2": 6}, "attributes": {"crowd": False}},
    {"id": "2", "category": "bicycle", "box2d": {"x1": 0, "y1": 0, "x2": 3, "y2": 3}},  # dropped
    {"id": "3", "category": "pedestrian", "box2d": {"x1": 10, "y1": 0, "x2": 20, "y2": 4}, "attributes": CROWD},
    {"id": "4", "category": "traffic sign", "box2d": {"x1": 0, "y1": 0, "x2": 0, "y2": 0}, "attributes": None},
    {"id": "5", "category": "rider", "box2d": {"x1": 7, "y1": 8, "x2": 8, "y2": 11}},
    {"id": "6", "category": "truck", "box2d": {"x1": 2, "y1": 3, "x2": 4, "y2": 5}},
    {"id": "7", "category": "lane", "poly2d": []},  # a non-box category of the 2018 release: dropped
]
FRAMES = [
    {"name": "a.jpg", "labels": A_LABELS},
    {"name": "b.jpg", "labels": None},
    {"name": "d.jpg"},
    {"name": "e.jpg", "labels": []},
    {"name": "not_on_disk.jpg", "labels": []},
]


def drivable_mask() -> np.ndarray:
    m = np.full((H, W), 2, np.uint8)  # background
    m[6:9] = 0  # direct
    m[9:] = 1  # alternative
    return m


def lane_mask() -> np.ndarray:
    """255 = background (bit 3 set); lane values: category | style << 4 | direction << 5."""
    m = np.full((H, W), 255, np.uint8)
    m[6:, 3] = 6  # single white, solid, parallel
    m[6:, 10] = 4 | 1 << 4  # road curb, dashed
    m[10, 12:] = 0 | 1 << 4 | 1 << 5  # crosswalk, dashed, vertical (= 48)
    m[0, 0] = 8 | 6  # bit 3 set: background whatever the other bits say
    return m


LANE_ALL = np.zeros((H, W), bool)
LANE_ALL[6:, 3] = LANE_ALL[6:, 10] = LANE_ALL[10, 12:] = True


def make_bdd(root: Path, frames=FRAMES, drivable=("a", "b"), lane=("a", "c"), split: str = "train") -> Path:
    img_dir = root / "images" / "100k" / split
    img_dir.mkdir(parents=True)
    for stem in "abcde":
        cv2.imwrite(str(img_dir / f"{stem}.jpg"), np.full((H, W, 3), 100, np.uint8))
    if frames is not None:
        (root / "labels" / "det_20").mkdir(parents=True)
        (root / "labels" / "det_20" / f"det_{split}.json").write_text(json.dumps(frames))
    for kind, stems, mask in (("drivable", drivable, drivable_mask()), ("lane", lane, lane_mask())):
        if stems:
            d = root / "labels" / kind / "masks" / split
            d.mkdir(parents=True)
            for stem in stems:
                cv2.imwrite(str(d / f"{stem}.png"), mask)
    return root


@pytest.fixture()
def bdd_root(tmp_path) -> Path:
    return make_bdd(tmp_path / "bdd100k")


def test_lane_bit_decoding():
    np.testing.assert_array_equal(lane_pixels(lane_mask()), LANE_ALL)
    only_white = np.zeros((H, W), bool)
    only_white[6:, 3] = True
    np.testing.assert_array_equal(lane_pixels(lane_mask(), [6]), only_white)


def test_boxes_from_det_json(bdd_root):
    ds = Bdd100kDataset(bdd_root)
    assert ds.names == ["train/a.jpg", "train/b.jpg", "train/c.jpg", "train/d.jpg", "train/e.jpg"]
    s = ds[0]
    # Box2D x2/y2 are inclusive: +1 gives exclusive edges; the pedestrian is clipped to the 16 px width
    np.testing.assert_array_equal(
        s.boxes,
        np.array([[1.5, 2, 6, 7], [10, 0, 16, 5], [0, 0, 1, 1], [7, 8, 9, 12], [2, 3, 5, 6]], np.float32),
    )
    assert s.labels.tolist() == [0, 1, 3, 2, 0]
    assert s.ignore.tolist() == [False, True, False, False, False]
    assert ds.dropped_boxes == 0


def test_all_mask_combinations(bdd_root):
    ds = Bdd100kDataset(bdd_root)
    a, b, c, d, e = (ds[i] for i in range(5))
    # a: drivable + lane -> lane overrides drivable, lane labelled
    expected = np.zeros((H, W), np.uint8)
    expected[6:] = 1
    expected[LANE_ALL] = 2
    np.testing.assert_array_equal(a.seg, expected)
    assert a.lane_labelled and a.meta["lane_path"] and a.meta["drivable_path"]
    # b: drivable only -> no lane supervision; labels null -> annotated, no objects
    expected_b = np.zeros((H, W), np.uint8)
    expected_b[6:] = 1
    np.testing.assert_array_equal(b.seg, expected_b)
    assert not b.lane_labelled and b.meta["lane_path"] is None
    assert b.boxes.shape == (0, 4) and b.labels.shape == (0,) and b.ignore.shape == (0,)
    # c: lane only -> everything but paint is IGNORE; not in the det JSON -> boxes None
    expected_c = np.full((H, W), IGNORE, np.uint8)
    expected_c[LANE_ALL] = 2
    np.testing.assert_array_equal(c.seg, expected_c)
    assert c.lane_labelled and c.boxes is None and c.labels is None
    # d: no masks, "labels" key missing -> seg None, empty boxes; e: labels [] -> empty boxes
    assert d.seg is None and not d.lane_labelled and d.boxes.shape == (0, 4)
    assert e.seg is None and e.boxes.shape == (0, 4)


def test_no_det_json_means_no_boxes(tmp_path):
    root = make_bdd(tmp_path / "bdd", frames=None, drivable=(), lane=())
    ds = Bdd100kDataset(root)
    for i in range(len(ds)):
        s = ds[i]
        assert s.boxes is None and s.seg is None and s.meta["det_json"] is None


def test_lane_categories_leave_out_curbs(bdd_root):
    ds = Bdd100kDataset(bdd_root, lane_categories=["single white", "crosswalk"])
    a, c = ds[0], ds[2]
    assert a.seg[7, 10] == 1  # the curb falls back to the drivable class
    assert a.seg[7, 3] == 2 and a.seg[10, 13] == 2
    assert c.seg[7, 10] == IGNORE
    with pytest.raises(ValueError, match="unknown lane categories \\['curb'\\]"):
        Bdd100kDataset(bdd_root, lane_categories=["curb"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "det_train.json: file is empty"),
        ("[{", "det_train.json: not valid JSON"),
        ('{"name": "a.jpg"}', "det_train.json: expected a JSON list of frames, got dict"),
        ('[{"labels": []}]', 'det_train.json: frame 0 has no "name"'),
        ('[{"name": "a.jpg"}, {"name": "a.jpg"}]', "det_train.json: image a.jpg is listed twice"),
    ],
)
def test_bad_det_json_names_file(bdd_root, text, message):
    (bdd_root / "labels" / "det_20" / "det_train.json").write_text(text)
    with pytest.raises(DatasetError, match=message):
        Bdd100kDataset(bdd_root)


BOX = {"x1": 1, "y1": 1, "x2": 3, "y2": 4}


@pytest.mark.parametrize(
    "label, message",
    [
        ({"id": "9", "category": "car", "box2d": {"x1": 1, "y1": 1, "x2": 3}}, r"\(car\): box2d is missing 'y2'"),
        ({"id": "9", "category": "car", "box2d": {**BOX, "x2": "3"}}, r"\(car\): box2d x2='3' is not a number"),
        ({"id": "9", "category": "car"}, r'\(car\): missing "box2d"'),
        ({"id": "9", "box2d": BOX}, ': missing or non-text "category"'),
    ],
)
def test_bad_label_names_file_image_and_id(tmp_path, label, message):
    root = make_bdd(tmp_path / "bdd", frames=[{"name": "b.jpg", "labels": [label]}])
    ds = Bdd100kDataset(root)
    ds[0]  # a.jpg is fine (not in the JSON)
    with pytest.raises(DatasetError, match=f"det_train.json: image b.jpg: label 9 ?{message}"):
        ds[1]


def test_box_outside_image_errors_or_is_dropped(tmp_path):
    labels = [
        {"id": "1", "category": "car", "box2d": {"x1": 20, "y1": 1, "x2": 30, "y2": 4}},
        {"id": "2", "category": "car", "box2d": {"x1": 1, "y1": 1, "x2": 2, "y2": 2}},
    ]
    root = make_bdd(tmp_path / "bdd", frames=[{"name": "a.jpg", "labels": labels}])
    with pytest.raises(DatasetError, match=r"det_train.json \(image a.jpg\): box 0 .* has no area inside the 16x12"):
        Bdd100kDataset(root)[0]
    ds = Bdd100kDataset(root, bad_boxes="drop")
    s = ds[0]
    np.testing.assert_array_equal(s.boxes, np.array([[1, 1, 3, 3]], np.float32))
    assert ds.dropped_boxes == 1


def test_bad_masks(bdd_root):
    cv2.imwrite(str(bdd_root / "labels" / "drivable" / "masks" / "train" / "a.png"), np.full((H, W), 5, np.uint8))
    with pytest.raises(DatasetError, match=r"a\.png: mask values \[5\] are not in the class map"):
        Bdd100kDataset(bdd_root)[0]
    cv2.imwrite(str(bdd_root / "labels" / "lane" / "masks" / "train" / "c.png"), np.zeros((H, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"c\.png: label is 8x12 but its image .*c\.jpg is 16x12"):
        Bdd100kDataset(bdd_root)[2]
    (bdd_root / "images" / "100k" / "train" / "d.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"d\.jpg: image file is empty"):
        Bdd100kDataset(bdd_root)[3]


def test_missing_folders_and_class_map_without_lane(tmp_path, bdd_root):
    with pytest.raises(DatasetError, match=r"images/100k: folder not found"):
        Bdd100kDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"no split 'val' \(splits found: \['train'\]\)"):
        Bdd100kDataset(bdd_root, split="val")
    cm = class_map_from_dict(
        {"seg_classes": ["background", "drivable"], "seg": {"values": {0: "drivable", 1: "drivable", 2: "background"}}},
        source="two.yaml",
    )
    with pytest.raises(ConfigError, match="two.yaml: seg_classes .* have no 'lane' class"):
        Bdd100kDataset(bdd_root, class_map=cm)
