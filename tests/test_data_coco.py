"""CocoDataset on tiny generated COCO files: hand-computed boxes, pycocotools cross-check, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.data.classmap import class_map_from_dict, load_class_map
from perception.data.coco import CocoDataset
from perception.data.sample import DatasetError

# Real COCO category ids (not contiguous).
CATEGORIES = [
    {"id": 1, "name": "person"},
    {"id": 2, "name": "bicycle"},
    {"id": 3, "name": "car"},
    {"id": 4, "name": "motorcycle"},
    {"id": 6, "name": "bus"},
    {"id": 8, "name": "truck"},
    {"id": 13, "name": "stop sign"},
    {"id": 18, "name": "dog"},
]
IMAGES = [
    {"id": 42, "file_name": "a.jpg", "width": 200, "height": 100},
    {"id": 7, "file_name": "b.png", "width": 64, "height": 48},  # listed, no annotations: no objects
    {"id": 9, "file_name": "sub/c.jpg", "width": 80, "height": 60},
]
ANNOTATIONS = [
    {"id": 1, "image_id": 42, "category_id": 3, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
    {"id": 2, "image_id": 42, "category_id": 1, "bbox": [50.5, 10, 20, 60], "area": 1200, "iscrowd": 1},
    {"id": 3, "image_id": 42, "category_id": 8, "bbox": [100, 5, 50, 25], "area": 1250, "iscrowd": 0, "ignore": 1},
    {"id": 4, "image_id": 42, "category_id": 18, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
    {"id": 5, "image_id": 42, "category_id": 2, "bbox": [190, 90, 20, 20], "area": 400, "iscrowd": 0},
    {"id": 6, "image_id": 9, "category_id": 13, "bbox": [1.25, 2.5, 3.5, 4.75], "area": 16.6, "iscrowd": 0},
    {"id": 7, "image_id": 9, "category_id": 4, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0},
    {"id": 8, "image_id": 9, "category_id": 6, "bbox": [20, 30, 40, 20], "area": 800, "iscrowd": 0},
]


def coco_dict() -> dict:
    return {"images": copy.deepcopy(IMAGES), "annotations": copy.deepcopy(ANNOTATIONS), "categories": CATEGORIES}


def make_coco(root: Path, data: dict | None = None, ann_name: str = "instances_val2017.json", img_dir: str = "val2017"):
    data = coco_dict() if data is None else data
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann = root / "annotations" / ann_name
    ann.write_text(json.dumps(data))
    (root / img_dir).mkdir(parents=True, exist_ok=True)
    for im in data["images"]:
        p = root / img_dir / im["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(p), np.full((im["height"], im["width"], 3), 90, np.uint8))
    return ann


def test_hand_computed_boxes_and_ignore_flags(tmp_path):
    make_coco(tmp_path)
    ds = CocoDataset(tmp_path, "val")
    assert ds.kind == "coco" and len(ds) == 3
    assert ds.names == ["a.jpg", "b.png", "sub/c.jpg"]
    a = ds[0]
    assert a.image.shape == (100, 200, 3) and a.seg is None and not a.lane_labelled
    # car; person (crowd) -> ignored pedestrian; truck (ignore: 1) -> ignored car; dog dropped;
    # bicycle [190, 90, 210, 110] clipped to the 200x100 image
    np.testing.assert_allclose(
        a.boxes, [[10, 20, 40, 60], [50.5, 10, 70.5, 70], [100, 5, 150, 30], [190, 90, 200, 100]], atol=1e-4
    )
    assert a.labels.tolist() == [0, 1, 0, 2]
    assert a.ignore.tolist() == [False, True, True, False]
    assert a.meta == {"image_id": 42, "source": str(tmp_path / "val2017" / "a.jpg")}
    b = ds[1]
    assert b.boxes.shape == (0, 4) and b.labels.shape == (0,) and b.ignore.shape == (0,)
    c = ds[2]
    # stop sign -> traffic_sign, motorcycle dropped, bus -> car
    np.testing.assert_allclose(c.boxes, [[1.25, 2.5, 4.75, 7.25], [20, 30, 60, 50]], atol=1e-4)
    assert c.labels.tolist() == [3, 0]


def test_matches_pycocotools(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools is a dev dependency")
    ann = make_coco(tmp_path)
    ds = CocoDataset(tmp_path, "val")
    ref = coco_api.COCO(str(ann))
    cmap = load_class_map("coco")
    for i in range(len(ds)):
        s = ds[i]
        img = ref.loadImgs(s.meta["image_id"])[0]
        assert img["file_name"] == s.name
        boxes, labels, ignore = [], [], []
        for a in ref.loadAnns(ref.getAnnIds(imgIds=img["id"], iscrowd=None)):
            det = cmap.map_det(ref.loadCats(a["category_id"])[0]["name"], "ref")
            if det is None:
                continue
            x, y, w, h = a["bbox"]
            boxes.append([min(max(x, 0), img["width"]), min(max(y, 0), img["height"]),
                          min(x + w, img["width"]), min(y + h, img["height"])])  # fmt: skip
            labels.append(det)
            ignore.append(bool(a["iscrowd"] or a.get("ignore", 0)))
        np.testing.assert_allclose(s.boxes, np.array(boxes).reshape(-1, 4), atol=1e-4)
        assert s.labels.tolist() == labels
        assert s.ignore.tolist() == ignore


@pytest.mark.parametrize(
    "ann_name, img_dir",
    [
        ("instances_train.json", "train"),
        ("instances_train2017.json", "train2017"),
        ("instances_train.json", "images/train"),
    ],
)
def test_layouts(tmp_path, ann_name, img_dir):
    make_coco(tmp_path, ann_name=ann_name, img_dir=img_dir)
    ds = CocoDataset(tmp_path, "train")
    assert ds.annotation_file.name == ann_name
    assert ds.image_dir == tmp_path / img_dir
    assert ds[2].labels.tolist() == [3, 0]


def test_explicit_annotation_file_and_image_dir(tmp_path):
    data = coco_dict()
    ann = tmp_path / "my.json"
    ann.write_text(json.dumps(data))
    for im in data["images"]:
        p = tmp_path / "pics" / im["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.zeros((im["height"], im["width"], 3), np.uint8))
    ds = CocoDataset(tmp_path, annotation_file=ann, image_dir=tmp_path / "pics")
    assert len(ds) == 3 and ds[0].labels.tolist() == [0, 1, 0, 2]


def test_has_boxes_false_means_not_labelled(tmp_path):
    data = coco_dict()
    data["images"][1]["has_boxes"] = False
    make_coco(tmp_path, data)
    s = CocoDataset(tmp_path, "val")[1]
    assert s.boxes is None and s.labels is None and s.ignore is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"].append({"id": 99, "image_id": 5, "category_id": 3, "bbox": [0, 0, 1, 1]}),
         r"instances_val2017\.json: annotation 99 has image_id 5, which is not in 'images'"),
        (lambda d: d["annotations"].append({"id": 98, "image_id": 42, "category_id": 77, "bbox": [0, 0, 1, 1]}),
         r"instances_val2017\.json: annotation 98 has category_id 77, which is not in 'categories'"),
        (lambda d: d["annotations"].append({"id": 97, "image_id": 42, "category_id": 3, "bbox": [0, 0, 1]}),
         r"annotation 97 bbox \[0, 0, 1\] is not 4 finite numbers"),
        (lambda d: d["images"].append({"id": 42, "file_name": "z.jpg", "width": 4, "height": 4}),
         "image id 42 is listed twice"),
        (lambda d: d.pop("annotations"), "missing or invalid 'annotations'"),
        (lambda d: d.update(images=[], annotations=[]), "lists no images"),
    ],
)  # fmt: skip
def test_bad_json_content(tmp_path, edit, message):
    data = coco_dict()
    edit(data)
    make_coco(tmp_path, data)
    with pytest.raises(DatasetError, match=message):
        CocoDataset(tmp_path, "val")


def test_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        CocoDataset(tmp_path / "nope", "val")
    with pytest.raises(DatasetError, match=r"instances_val\.json: COCO annotation file not found"):
        CocoDataset(tmp_path, "val")
    ann = make_coco(tmp_path)
    ann.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: file is empty"):
        CocoDataset(tmp_path, "val")
    ann.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: not valid JSON"):
        CocoDataset(tmp_path, "val")
    ann.write_text(json.dumps(coco_dict()))
    (tmp_path / "val2017").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="COCO image folder not found"):
        CocoDataset(tmp_path, "val")


def test_corrupt_missing_or_resized_image(tmp_path):
    make_coco(tmp_path)
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"\x00garbage")
    (tmp_path / "val2017" / "b.png").unlink()
    cv2.imwrite(str(tmp_path / "val2017" / "sub" / "c.jpg"), np.zeros((30, 40, 3), np.uint8))
    ds = CocoDataset(tmp_path, "val")
    with pytest.raises(DatasetError, match=r"a\.jpg: cannot decode"):
        ds[0]
    with pytest.raises(DatasetError, match=r"b\.png: cannot read image"):
        ds[1]
    with pytest.raises(DatasetError, match=r"c\.jpg: image is 40x30 but .* says 80x60"):
        ds[2]


def test_box_with_no_area_raises_or_is_dropped(tmp_path):
    data = coco_dict()
    data["annotations"].append({"id": 50, "image_id": 9, "category_id": 3, "bbox": [10, 10, -5, 5]})
    data["annotations"].append({"id": 51, "image_id": 9, "category_id": 3, "bbox": [500, 10, 5, 5]})
    make_coco(tmp_path, data)
    with pytest.raises(DatasetError, match=r"instances_val2017\.json \(image 9 sub/c\.jpg\): box 2"):
        CocoDataset(tmp_path, "val")[2]
    ds = CocoDataset(tmp_path, "val", bad_boxes="drop")
    assert ds[2].labels.tolist() == [3, 0]
    assert ds.dropped_boxes == 2


def test_strict_class_map(tmp_path):
    make_coco(tmp_path)
    cm = class_map_from_dict({"det": {"classes": {"car": "car"}, "unmapped": "error"}})
    with pytest.raises(DatasetError, match="box class 'person' is not in the class map"):
        CocoDataset(tmp_path, "val", class_map=cm)
