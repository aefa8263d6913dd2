"""DatasetWriter writes the perception-folder layout; FolderDataset (and YOLO / pycocotools) read it back."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import yaml

from perception.data.classmap import class_map_from_dict, load_class_map
from perception.data.folder import FolderDataset
from perception.data.sample import DatasetError, Sample
from perception.data.writers import DatasetWriter
from perception.data.yolo import YoloDataset
from perception.errors import OutputError

W, H = 64, 48


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _seg(seed: int) -> np.ndarray:
    seg = np.random.default_rng(seed).integers(0, 3, (H, W), dtype=np.uint8)
    seg[:4] = 255
    return seg


def samples() -> dict[str, tuple[Sample, str]]:
    """name -> (sample, split): seg + boxes with an ignored one + numpy meta; seg without boxes;
    boxes (none, but labelled) without seg; one in val."""
    full = Sample(
        image=_image(1),
        name="clip003/000012",
        seg=_seg(1),
        lane_labelled=True,
        boxes=np.array([[8, 12, 24, 36], [30.25, 4.5, 50.75, 20.125], [0, 0, 64, 48]], np.float32),
        labels=np.array([0, 3, 1], np.int64),
        ignore=np.array([False, False, True]),
        meta={
            "lanes": [np.array([[1.5, 2.0], [3.0, 4.0]], np.float32)],
            "track_ids": np.array([7, 9], np.int64),
            "speed": np.float64(12.5),
            "camera": {"fx": np.float32(100.0), "name": "front"},
        },
    )
    no_boxes = Sample(image=_image(2), name="clip003/000013", seg=_seg(2), lane_labelled=True)
    no_seg = Sample(
        image=_image(3),
        name="frame_b",
        boxes=np.zeros((0, 4), np.float32),
        labels=np.zeros(0, np.int64),
    )
    val = Sample(
        image=_image(4),
        name="v0",
        boxes=np.array([[1, 2, 3, 4]], np.float32),
        labels=np.array([2], np.int64),
    )
    return {s.name: (s, split) for s, split in [(full, "train"), (no_boxes, "train"), (no_seg, "train"), (val, "val")]}


def write_all(out, **kwargs) -> dict:
    with DatasetWriter(out, image_format="png", description="unit test", **kwargs) as w:
        for s, split in samples().values():
            w.add(s, split)
    return w.close()


def test_round_trip_png(tmp_path):
    counts = write_all(tmp_path / "ds")
    assert counts == {
        "train": {"images": 3, "with_seg": 2, "with_boxes": 2, "boxes": 3, "ignored_boxes": 1},
        "val": {"images": 1, "with_seg": 0, "with_boxes": 1, "boxes": 1, "ignored_boxes": 0},
    }
    want = samples()
    ds = FolderDataset(tmp_path / "ds", "train")
    assert ds.kind == "synthetic" and len(ds) == 3
    assert ds.names == ["clip003/000012", "clip003/000013", "frame_b"]
    assert ds.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign")
    for i in range(len(ds)):
        got = ds[i]
        ref, _ = want[got.name]
        np.testing.assert_array_equal(got.image, ref.image)
        if ref.seg is None:
            assert got.seg is None
        else:
            np.testing.assert_array_equal(got.seg, ref.seg)
        assert got.lane_labelled == ref.lane_labelled
        if ref.boxes is None:
            assert got.boxes is None and got.labels is None and got.ignore is None
        else:
            np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-4)
            assert got.boxes.dtype == np.float32
            assert got.labels.tolist() == ref.labels.tolist()
            assert got.ignore.tolist() == ref.ignore.tolist()
    full = ds[0]
    assert full.meta == {
        "lanes": [[[1.5, 2.0], [3.0, 4.0]]],
        "track_ids": [7, 9],
        "speed": 12.5,
        "camera": {"fx": 100.0, "name": "front"},
    }
    assert ds[1].meta == {} and ds[2].meta == {}
    val = FolderDataset(tmp_path / "ds", "val")
    assert val.names == ["v0"] and val[0].labels.tolist() == [2]


def test_files_on_disk(tmp_path):
    out = tmp_path / "ds"
    write_all(out)
    # YOLO txt, hand computed for the 64x48 image: box [8, 12, 24, 36] car -> centre (16, 24), size 16x24;
    # box [30.25, 4.5, 50.75, 20.125] traffic_sign -> centre (40.5, 12.3125), size 20.5 x 15.625; the ignored
    # box is not written
    assert (out / "labels/train/clip003/000012.txt").read_text() == (
        "0 0.250000 0.500000 0.250000 0.500000\n3 0.632812 0.256510 0.320312 0.325521\n"
    )
    assert (out / "labels/train/frame_b.txt").read_text() == ""  # labelled, no objects
    assert not (out / "labels/train/clip003/000013.txt").exists()  # never labelled
    assert (out / "masks/train/clip003/000012.png").is_file() and not (out / "masks/train/frame_b.png").exists()
    assert not (out / "meta/train/frame_b.json").exists()
    assert sorted(p.name for p in (out / "images/train/clip003").iterdir()) == ["000012.png", "000013.png"]
    assert not list(out.rglob("*.tmp"))

    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["train"] == "images/train" and info["val"] == "images/val" and "test" not in info
    assert info["names"] == {0: "car", 1: "pedestrian", 2: "cyclist", 3: "traffic_sign"}
    assert info["format"] == "perception-folder" and info["version"] == 1 and info["complete"] is True
    assert info["seg_classes"] == ["background", "drivable", "lane"]
    assert info["lane_labelled"] is True and info["description"] == "unit test"
    assert info["counts"]["train"]["images"] == 3

    coco = json.loads((out / "annotations/train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["car", "pedestrian", "cyclist", "traffic_sign"]
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4]
    imgs = {im["file_name"]: im for im in coco["images"]}
    assert imgs["clip003/000013.png"]["has_boxes"] is False and imgs["frame_b.png"]["has_boxes"] is True
    assert imgs["frame_b.png"]["has_seg"] is False and imgs["clip003/000012.png"]["width"] == W
    anns = coco["annotations"]
    assert [a["image_id"] for a in anns] == [imgs["clip003/000012.png"]["id"]] * 3
    assert [a["category_id"] for a in anns] == [1, 4, 2]
    assert anns[1]["bbox"] == [30.25, 4.5, 20.5, 15.625] and anns[1]["area"] == pytest.approx(20.5 * 15.625)
    assert [(a["ignore"], a["iscrowd"]) for a in anns] == [(0, 0), (0, 0), (1, 1)]


def test_pycocotools_reads_the_annotations(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools is a dev dependency")
    write_all(tmp_path / "ds")
    ref = coco_api.COCO(str(tmp_path / "ds/annotations/train.json"))
    assert len(ref.getImgIds()) == 3 and len(ref.getAnnIds()) == 3
    assert len(ref.getAnnIds(iscrowd=False)) == 2  # the ignored box is a crowd region for COCOeval
    ann = ref.loadAnns(ref.getAnnIds(catIds=[4]))[0]
    assert ann["bbox"] == [30.25, 4.5, 20.5, 15.625]


def test_yolo_loader_reads_the_folder(tmp_path):
    write_all(tmp_path / "ds")
    ds = YoloDataset(tmp_path / "ds", "train")  # names from dataset.yaml, project names in yolo.yaml
    s = ds[ds.names.index("clip003/000012.png")]
    # boxes come back through 6-decimal normalised text: within 1e-6 * 64 px
    np.testing.assert_allclose(s.boxes, [[8, 12, 24, 36], [30.25, 4.5, 50.75, 20.125]], atol=1e-3)
    assert s.labels.tolist() == [0, 3]


def test_jpeg_default_is_close_and_masks_exact(tmp_path):
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = (40, 120, 200)
    s = Sample(image=img, name="a", seg=_seg(5), lane_labelled=True)
    with DatasetWriter(tmp_path / "ds") as w:
        w.add(s)
    assert (tmp_path / "ds/images/train/a.jpg").is_file()
    got = FolderDataset(tmp_path / "ds")[0]
    assert np.abs(got.image.astype(int) - img).mean() < 3
    np.testing.assert_array_equal(got.seg, s.seg)


def test_coco_written_on_close_only_and_exception_in_block_keeps_data(tmp_path):
    out = tmp_path / "ds"
    s = samples()
    with pytest.raises(RuntimeError, match="renderer crashed"):
        with DatasetWriter(out, image_format="png") as w:
            w.add(s["clip003/000012"][0])
            w.add(s["frame_b"][0])
            assert not (out / "annotations/train.json").exists()  # no per-frame rewrite
            raise RuntimeError("renderer crashed")
    ds = FolderDataset(out, "train")
    assert ds.names == ["clip003/000012", "frame_b"]
    assert ds[0].ignore.tolist() == [False, False, True]


def test_killed_run_falls_back_to_txt_labels(tmp_path, caplog):
    out = tmp_path / "ds"
    w = DatasetWriter(out, image_format="png")
    for name in ("clip003/000012", "clip003/000013", "frame_b"):
        w.add(samples()[name][0])
    # no close(): as if the process was killed
    assert yaml.safe_load((out / "dataset.yaml").read_text())["complete"] is False
    with caplog.at_level(logging.WARNING, logger="perception.data.folder"):
        ds = FolderDataset(out, "train")
    assert "ignore flags are lost" in caplog.text
    assert ds.names == ["clip003/000012", "clip003/000013", "frame_b"]
    full = ds[0]
    np.testing.assert_allclose(full.boxes, [[8, 12, 24, 36], [30.25, 4.5, 50.75, 20.125]], atol=1e-3)
    assert full.labels.tolist() == [0, 3] and full.ignore.tolist() == [False, False]
    np.testing.assert_array_equal(full.seg, samples()["clip003/000012"][0].seg)
    assert full.lane_labelled is True and full.meta["track_ids"] == [7, 9]
    assert ds[1].boxes is None  # no label file: never labelled
    assert ds[2].boxes.shape == (0, 4) and ds[2].seg is None


def test_lane_labelled_mixed(tmp_path):
    out = tmp_path / "ds"
    with DatasetWriter(out, image_format="png") as w:
        w.add(Sample(image=_image(1), name="a", seg=_seg(1), lane_labelled=True))
        w.add(Sample(image=_image(2), name="b", seg=_seg(2), lane_labelled=False))
    assert yaml.safe_load((out / "dataset.yaml").read_text())["lane_labelled"] == "mixed"
    ds = FolderDataset(out)
    assert [ds[0].lane_labelled, ds[1].lane_labelled] == [True, False]


def test_add_refuses_bad_samples(tmp_path):
    s = samples()["clip003/000012"][0]
    with DatasetWriter(tmp_path / "ds", image_format="png") as w:
        w.add(s)
        with pytest.raises(ValueError, match="'clip003/000012' is already in split 'train'"):
            w.add(s)
        w.add(s, "val")  # the same name in another split is fine
        for bad in ("../x", "/abs", "a//b", "", "a\\b"):
            with pytest.raises(ValueError, match="is not a relative path"):
                w.add(Sample(image=_image(1), name=bad))
        with pytest.raises(ValueError, match="split must be"):
            w.add(Sample(image=_image(1), name="ok"), "a/b")
        outside = np.array([[50, 10, 70, 20]], np.float32)
        with pytest.raises(ValueError, match="box 0 .* is not inside the 64x48 image"):
            w.add(Sample(image=_image(1), name="o", boxes=outside, labels=np.array([0], np.int64)))
        with pytest.raises(ValueError, match="box labels \\[4\\]"):
            w.add(Sample(image=_image(1), name="o", boxes=outside / 4, labels=np.array([4], np.int64)))
        seg = np.full((H, W), 3, np.uint8)
        with pytest.raises(ValueError, match="seg values \\[3\\]"):
            w.add(Sample(image=_image(1), name="o", seg=seg))
        with pytest.raises(ValueError, match="meta.when: object cannot be written as JSON"):
            w.add(Sample(image=_image(1), name="o", meta={"when": object()}))
    assert w.close()["train"]["images"] == 1
    assert not list((tmp_path / "ds/images/train").glob("o.*"))  # a refused sample leaves no files
    with pytest.raises(ValueError, match="closed"):
        w.add(s)
    with pytest.raises(ValueError, match="image_format"):
        DatasetWriter(tmp_path / "x", image_format="gif")


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=str(blocker / "out")):
        DatasetWriter(blocker / "out")


def test_stale_annotations_removed_on_rewrite(tmp_path):
    out = tmp_path / "ds"
    write_all(out)
    w = DatasetWriter(out, image_format="png")
    w.add(Sample(image=_image(9), name="new"))
    assert not (out / "annotations/train.json").exists()  # an old index never pairs with new images
    assert (out / "annotations/val.json").exists()  # splits this run has not touched stay


def test_folder_class_map_can_merge_classes(tmp_path):
    write_all(tmp_path / "ds")
    cm = class_map_from_dict(
        {
            "seg_classes": ["background", "drivable"],
            "det_classes": ["vehicle", "other"],
            "seg": {"values": {0: "background", 1: "drivable", 2: "drivable", 255: "ignore"}, "lane_labelled": False},
            "det": {"classes": {"car": "vehicle", "traffic_sign": "other"}, "unmapped": "drop"},
        }
    )
    ds = FolderDataset(tmp_path / "ds", class_map=cm)
    assert ds.seg_classes == ("background", "drivable") and ds.det_classes == ("vehicle", "other")
    s = ds[0]
    ref = samples()["clip003/000012"][0].seg
    np.testing.assert_array_equal(s.seg, np.where(ref == 2, 1, ref))
    assert not s.lane_labelled
    assert s.labels.tolist() == [0, 1]  # pedestrian (the ignored box) dropped
    # the shipped identity map for synthetic data reads the folder unchanged
    same = FolderDataset(tmp_path / "ds", class_map=load_class_map("synthetic"))[0]
    np.testing.assert_array_equal(same.seg, ref)
    assert same.labels.tolist() == [0, 3, 1]


def test_folder_errors(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match="dataset folder not found"):
        FolderDataset(out)
    out.mkdir()
    with pytest.raises(DatasetError, match=r"dataset\.yaml: not found"):
        FolderDataset(out)
    (out / "dataset.yaml").write_text("names: [car]\n")
    with pytest.raises(DatasetError, match="'format' is not 'perception-folder'"):
        FolderDataset(out)
    write_all(out)
    with pytest.raises(DatasetError, match="split 'test' not found"):
        FolderDataset(out, "test")
    (out / "annotations/val.json").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"val\.json: file is empty"):
        FolderDataset(out, "val")
    # a mask value outside the class list, a missing mask, a corrupt meta file
    cv2.imwrite(str(out / "masks/train/clip003/000012.png"), np.full((H, W), 7, np.uint8))
    (out / "masks/train/clip003/000013.png").unlink()
    (out / "meta/train/clip003").mkdir(parents=True, exist_ok=True)
    (out / "meta/train/frame_b.json").write_text("{oops")
    ds = FolderDataset(out)
    with pytest.raises(DatasetError, match=r"000012\.png: mask values \[7\] are not in the class map"):
        ds[0]
    with pytest.raises(DatasetError, match=r"000013\.png: mask is missing"):
        ds[1]
    with pytest.raises(DatasetError, match=r"frame_b\.json: not valid JSON"):
        ds[2]


def test_cocoeval_does_not_penalise_missing_an_ignored_box(tmp_path):
    """pycocotools reads ``iscrowd`` (not ``ignore``): an ignored box must not count as a box to find."""
    cocoeval = pytest.importorskip("pycocotools.cocoeval", reason="pycocotools is a dev dependency")
    coco_api = pytest.importorskip("pycocotools.coco")
    boxes = np.array([[4, 4, 30, 30], [34, 10, 60, 40]], np.float32)
    s = Sample(image=_image(1), name="a", boxes=boxes, labels=np.zeros(2, np.int64), ignore=np.array([False, True]))
    with DatasetWriter(tmp_path / "ds", image_format="png") as w:
        w.add(s)
    gt = coco_api.COCO(str(tmp_path / "ds/annotations/train.json"))
    dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [4, 4, 26, 26], "score": 0.9}])
    ev = cocoeval.COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]; 0.5 if the ignored box counted as missed
