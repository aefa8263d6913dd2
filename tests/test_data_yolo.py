"""YoloDataset on tiny generated Ultralytics datasets: hand-computed pixel boxes, both layouts, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from perception.data.classmap import class_map_from_dict
from perception.data.io import read_image
from perception.data.sample import DatasetError
from perception.data.yolo import YoloDataset

W, H = 200, 100  # every generated image is 200 wide, 100 high
NAMES = ["person", "bicycle", "car", "dog", "stop sign"]  # -> pedestrian, cyclist, car, (dropped), traffic_sign


def _image(path: Path, w: int = W, h: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 1] = 77
    assert cv2.imwrite(str(path), img)


def _labels(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_yolo(root: Path, layout: str = "images/split", names=NAMES, split: str = "train") -> tuple[Path, Path]:
    """Create the folders of a YOLO dataset and data.yaml; returns (image folder, label folder)."""
    if layout == "images/split":
        img_dir, lab_dir = root / "images" / split, root / "labels" / split
    else:
        img_dir, lab_dir = root / split / "images", root / split / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    if names is not None:
        (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": names}))
    return img_dir, lab_dir


@pytest.mark.parametrize("layout", ["images/split", "split/images"])
def test_hand_computed_boxes_both_layouts(tmp_path, layout):
    img_dir, lab_dir = make_yolo(tmp_path, layout)
    _image(img_dir / "a.jpg")
    _labels(
        lab_dir / "a.txt",
        "2 0.5 0.5 0.2 0.4\n"  # car: centre (100, 50), size 40x40 -> [80, 30, 120, 70]
        "\n"  # blank lines are skipped
        "0 0.1 0.2 0.1 0.2\n"  # person: centre (20, 20), size 20x20 -> [10, 10, 30, 30]
        "3 0.5 0.5 0.1 0.1\n"  # dog: not in the class map, dropped
        "1 0.75 0.25 0.05 0.3\n"  # bicycle: centre (150, 25), size 10x30 -> [145, 10, 155, 40]
        "4 0.95 0.5 0.2 0.2\n",  # stop sign: [170, 40, 210, 60] sticks out right -> clipped to x2 = 200
    )
    ds = YoloDataset(tmp_path, "train")
    assert len(ds) == 1 and ds.names == ["a.jpg"] and ds.kind == "yolo"
    assert ds.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign")
    s = ds[0]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8 and s.seg is None and not s.lane_labelled
    np.testing.assert_allclose(
        s.boxes, [[80, 30, 120, 70], [10, 10, 30, 30], [145, 10, 155, 40], [170, 40, 200, 60]], atol=1e-4
    )
    assert s.boxes.dtype == np.float32
    assert s.labels.tolist() == [0, 1, 2, 3]
    assert s.ignore.tolist() == [False] * 4
    assert s.meta["source"] == str(img_dir / "a.jpg")
    assert ds.dropped_boxes == 0


def test_names_as_mapping_in_dataset_yaml_and_nested_folders(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path, names=None)
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({"names": {0: "car", 1: "truck"}, "nc": 2}))
    _image(img_dir / "clip1" / "f0.png")
    _labels(lab_dir / "clip1" / "f0.txt", "1 0.5 0.5 0.5 0.5\n")  # truck -> car, [50, 25, 150, 75]
    ds = YoloDataset(tmp_path, "train")
    assert ds.class_names == ["car", "truck"]
    assert ds.names == ["clip1/f0.png"]
    s = ds[0]
    np.testing.assert_allclose(s.boxes, [[50, 25, 150, 75]])
    assert s.labels.tolist() == [0]


def test_missing_label_file_means_no_objects_and_orphan_label_warns(tmp_path, caplog):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    with caplog.at_level(logging.WARNING, logger="perception.data.yolo"):
        ds = YoloDataset(tmp_path, "train")
    assert "orphan.txt" in caplog.text and "no image" in caplog.text
    s = ds[0]
    assert s.boxes is not None and s.boxes.shape == (0, 4) and s.labels.shape == (0,)


def test_class_map_keyed_by_id_wins_and_works_without_names(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path, names=None)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "7 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n")
    cm = class_map_from_dict({"det": {"classes": {7: "cyclist"}}})
    s = YoloDataset(tmp_path, "train", class_map=cm)[0]
    assert s.labels.tolist() == [2]  # 7 -> cyclist, 9 unmapped -> dropped
    np.testing.assert_allclose(s.boxes, [[80, 40, 120, 60]])
    # names given: an id key still wins over the name of that id
    cm2 = class_map_from_dict({"det": {"classes": {0: "traffic_sign", "person": "pedestrian"}}})
    s2 = YoloDataset(tmp_path, "train", class_map=cm2, class_names=["person"] * 10)[0]
    assert s2.labels.tolist() == [1, 1]


def test_name_keyed_map_without_names_is_an_error(tmp_path):
    img_dir, _ = make_yolo(tmp_path, names=None)
    _image(img_dir / "a.jpg")
    with pytest.raises(DatasetError, match="class_names"):
        YoloDataset(tmp_path, "train")


def test_malformed_line_names_file_and_line(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1 0.9\n")
    ds = YoloDataset(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"a\.txt:2: expected 5 numbers"):
        ds[0]
    _labels(lab_dir / "a.txt", "car 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"a\.txt:1: not a number"):
        ds[0]
    _labels(lab_dir / "a.txt", "1.5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"a\.txt:1: class id '1.5'"):
        ds[0]


def test_negative_width_raises_or_is_dropped_and_counted(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "2 0.5 0.5 0.2 0.4\n2 0.5 0.5 -0.2 0.4\n")
    with pytest.raises(DatasetError, match=r"a\.txt:2: box width -0.2"):
        YoloDataset(tmp_path, "train")[0]
    ds = YoloDataset(tmp_path, "train", bad_boxes="drop")
    s = ds[0]
    np.testing.assert_allclose(s.boxes, [[80, 30, 120, 70]])
    ds[0]  # loading twice does not count twice
    assert ds.dropped_boxes == 1


def test_box_fully_outside_image_raises_or_is_dropped(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "0 1.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n")  # first: x from 290 to 310
    with pytest.raises(DatasetError, match=r"a\.txt: box 0 .* no area inside the 200x100 image"):
        YoloDataset(tmp_path, "train")[0]
    ds = YoloDataset(tmp_path, "train", bad_boxes="drop")
    np.testing.assert_allclose(ds[0].boxes, [[90, 45, 110, 55]])
    assert ds.dropped_boxes == 1


def test_class_id_outside_names(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"a\.txt:2: class id 5 is outside the 5 names in .*data\.yaml"):
        YoloDataset(tmp_path, "train")[0]


def test_strict_class_map_rejects_unknown_class(tmp_path):
    img_dir, lab_dir = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    _labels(lab_dir / "a.txt", "3 0.5 0.5 0.1 0.1\n")  # dog
    cm = class_map_from_dict({"det": {"classes": {"car": "car"}, "unmapped": "error"}})
    with pytest.raises(DatasetError, match=r"a\.txt:1: box class 'dog'"):
        YoloDataset(tmp_path, "train", class_map=cm)[0]


def test_listing_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        YoloDataset(tmp_path / "nope")
    img_dir, lab_dir = make_yolo(tmp_path)
    with pytest.raises(DatasetError, match="split 'val' not found"):
        YoloDataset(tmp_path, "val")
    with pytest.raises(DatasetError, match="no images"):
        YoloDataset(tmp_path, "train")
    _image(img_dir / "a.jpg")
    _image(img_dir / "a.png")
    with pytest.raises(DatasetError, match="shares its label file"):
        YoloDataset(tmp_path, "train")
    (img_dir / "a.png").unlink()
    lab_dir.rmdir()
    with pytest.raises(DatasetError, match="label folder not found"):
        YoloDataset(tmp_path, "train")


def test_bad_data_yaml(tmp_path):
    img_dir, _ = make_yolo(tmp_path)
    _image(img_dir / "a.jpg")
    (tmp_path / "data.yaml").write_text("names: {0: car, 2: bus}\n")
    with pytest.raises(DatasetError, match=r"data\.yaml: 'names' keys must be the class ids"):
        YoloDataset(tmp_path, "train")
    (tmp_path / "data.yaml").write_text("names: [car]\nnc: 2\n")
    with pytest.raises(DatasetError, match="nc is 2"):
        YoloDataset(tmp_path, "train")


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    img_dir, _ = make_yolo(tmp_path)
    _image(img_dir / "good.jpg")
    (img_dir / "bad.png").write_bytes(b"not an image at all")
    ok, buf = cv2.imencode(".jpg", np.full((H, W, 3), 128, np.uint8))
    (img_dir / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    (img_dir / "empty.jpg").write_bytes(b"")
    ds = YoloDataset(tmp_path, "train")
    assert ds.names == ["bad.png", "cut.jpg", "empty.jpg", "good.jpg"]
    with pytest.raises(DatasetError, match=r"bad\.png: cannot decode"):
        ds[0]
    with pytest.raises(DatasetError, match=r"cut\.jpg: JPEG is truncated"):
        ds[1]
    with pytest.raises(DatasetError, match=r"empty\.jpg: image file is empty"):
        ds[2]
    assert ds[3].image.shape == (H, W, 3)
    with pytest.raises(DatasetError, match="missing|cannot read"):
        read_image(img_dir / "nope.jpg")
