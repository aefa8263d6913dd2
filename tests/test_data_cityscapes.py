"""Cityscapes loader on a hand-drawn gtFine sample: instance boxes, group ignore boxes, sign components."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.data.cityscapes import CityscapesDataset
from perception.data.classmap import class_map_from_dict
from perception.data.sample import IGNORE, DatasetError

H, W = 20, 30
STEM = "aachen_000000_000019"


def gt_fine() -> tuple[np.ndarray, np.ndarray]:
    """(labelIds uint8, instanceIds uint16) drawn by hand; comments give the expected boxes (xyxy, exclusive)."""
    label = np.full((H, W), 11, np.uint8)  # building
    label[0, :] = 0  # unlabeled -> IGNORE
    label[14:, :] = 7  # road -> drivable
    inst = label.astype(np.uint16)  # stuff pixels hold their label id
    regions = [  # (rows, cols, label id, instance value)
        ((5, 10), (2, 6), 26, 26000),  # car, box [2, 5, 6, 10]
        ((5, 10), (6, 9), 26, 26001),  # car touching the first, box [6, 5, 9, 10]
        ((10, 13), (20, 26), 27, 27000),  # truck -> car, box [20, 10, 26, 13]
        ((3, 9), (12, 14), 24, 24000),  # person, box [12, 3, 14, 9], 12 px
        ((2, 5), (20, 25), 26, 26),  # car group (no instances): ignore box [20, 2, 25, 5], 15 px
        ((1, 4), (27, 30), 20, 20),  # traffic sign (never has instances): box [27, 1, 30, 4], 9 px
        ((15, 17), (0, 2), 32, 32000),  # motorcycle: not in the class map -> no box
    ]
    for (r0, r1), (c0, c1), lid, value in regions:
        label[r0:r1, c0:c1] = lid
        inst[r0:r1, c0:c1] = value
    return label, inst


def make_cityscapes(root: Path, split: str = "train", with_instances: bool = True) -> Path:
    label, inst = gt_fine()
    img_dir = root / "leftImg8bit" / split / "aachen"
    gt_dir = root / "gtFine" / split / "aachen"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / f"{STEM}_leftImg8bit.png"), np.full((H, W, 3), 77, np.uint8))
    cv2.imwrite(str(gt_dir / f"{STEM}_gtFine_labelIds.png"), label)
    if with_instances:
        assert cv2.imwrite(str(gt_dir / f"{STEM}_gtFine_instanceIds.png"), inst)
    return root


@pytest.fixture()
def cs_root(tmp_path) -> Path:
    return make_cityscapes(tmp_path / "cityscapes")


def test_instance_group_and_sign_boxes(cs_root):
    ds = CityscapesDataset(cs_root, min_area=1)
    assert ds.names == [f"train/aachen/{STEM}"]
    s = ds[0]
    np.testing.assert_array_equal(
        s.boxes,
        np.array(
            [
                [12, 3, 14, 9],  # instance 24000 person
                [2, 5, 6, 10],  # instance 26000: touching cars stay separate
                [6, 5, 9, 10],  # instance 26001
                [20, 10, 26, 13],  # instance 27000 truck
                [20, 2, 25, 5],  # car group region
                [27, 1, 30, 4],  # traffic sign from the class mask
            ],
            np.float32,
        ),
    )
    assert s.labels.tolist() == [1, 0, 0, 0, 0, 3]
    assert s.ignore.tolist() == [False, False, False, False, True, False]
    assert s.meta["instance_path"].endswith(f"{STEM}_gtFine_instanceIds.png")
    assert s.meta["city"] == "aachen"
    assert "instanceIds" in s.meta["boxes_from"] and "touching objects merge" in s.meta["boxes_from"]


def test_seg_values(cs_root):
    s = CityscapesDataset(cs_root)[0]
    expected = np.zeros((H, W), np.uint8)
    expected[0, :] = IGNORE
    expected[14:, :] = 1
    expected[15:17, 0:2] = 0  # motorcycle on the road is not road
    np.testing.assert_array_equal(s.seg, expected)
    assert s.lane_labelled is False


def test_min_area_applies_to_components_not_instances(cs_root):
    s = CityscapesDataset(cs_root)[0]  # default 20 px: group (15 px) and sign (9 px) give no box
    assert s.labels.tolist() == [1, 0, 0, 0]
    assert not s.ignore.any()


def test_without_instance_ids_falls_back_to_components(tmp_path):
    root = make_cityscapes(tmp_path / "cs", with_instances=False)
    s = CityscapesDataset(root, min_area=1)[0]
    np.testing.assert_array_equal(
        s.boxes,
        np.array(
            [
                [12, 3, 14, 9],  # person
                [20, 2, 25, 5],  # car group: found first in scan order, not told apart
                [2, 5, 9, 10],  # the two touching cars merged into one box
                [20, 10, 26, 13],  # truck
                [27, 1, 30, 4],  # sign
            ],
            np.float32,
        ),
    )
    assert s.labels.tolist() == [1, 0, 0, 0, 3]
    assert not s.ignore.any()
    assert s.meta["instance_path"] is None and "no instanceIds" in s.meta["boxes_from"]


def test_unmapped_thing_with_strict_class_map_names_file(cs_root):
    cm = class_map_from_dict({"seg": {"default": "background"}, "det": {"classes": {26: "car"}, "unmapped": "error"}})
    with pytest.raises(DatasetError, match=r"instanceIds\.png: box class 24 is not in the class map"):
        CityscapesDataset(cs_root, class_map=cm)[0]


def test_bad_files(cs_root):
    gt = cs_root / "gtFine" / "train" / "aachen"
    label, inst = gt_fine()
    cv2.imwrite(str(gt / f"{STEM}_gtFine_instanceIds.png"), inst.astype(np.uint8))
    with pytest.raises(DatasetError, match=r"instanceIds\.png: expected uint16 label values, got uint8"):
        CityscapesDataset(cs_root)[0]
    cv2.imwrite(str(gt / f"{STEM}_gtFine_instanceIds.png"), inst[:10])
    with pytest.raises(DatasetError, match=r"instanceIds\.png: label is 30x10 but its image .* is 30x20"):
        CityscapesDataset(cs_root)[0]
    label[4, 4] = 40
    cv2.imwrite(str(gt / f"{STEM}_gtFine_labelIds.png"), label)
    with pytest.raises(DatasetError, match=r"labelIds\.png: mask values \[40\] are not in the class map"):
        CityscapesDataset(cs_root)[0]
    (gt / f"{STEM}_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"labelIds\.png: label image not found"):
        CityscapesDataset(cs_root)[0]


def test_missing_folders(tmp_path, cs_root):
    with pytest.raises(DatasetError, match=r"no split 'val' \(splits found: \['train'\]\)"):
        CityscapesDataset(cs_root, split="val")
    with pytest.raises(DatasetError, match="leftImg8bit: folder not found"):
        CityscapesDataset(tmp_path)
    (cs_root / "leftImg8bit" / "val" / "bonn").mkdir(parents=True)
    (cs_root / "gtFine" / "val").mkdir()
    with pytest.raises(DatasetError, match="val: no \\*_leftImg8bit.png images"):
        CityscapesDataset(cs_root, split="val")
    root2 = make_cityscapes(tmp_path / "no_gt")
    (root2 / "gtFine" / "train" / "aachen" / f"{STEM}_gtFine_labelIds.png").unlink()
    (root2 / "gtFine" / "train" / "aachen" / f"{STEM}_gtFine_instanceIds.png").unlink()
    (root2 / "gtFine" / "train" / "aachen").rmdir()
    (root2 / "gtFine" / "train").rmdir()
    with pytest.raises(DatasetError, match=r"gtFine/train: label folder not found"):
        CityscapesDataset(root2)
