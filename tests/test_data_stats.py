"""Dataset statistics and `perception data stats`: hand-counted pixels and boxes, JSON output, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_data_camvid import make_camvid

from perception.cli import main
from perception.data.base import Dataset
from perception.data.classmap import ClassMap
from perception.data.registry import build_dataset
from perception.data.sample import IGNORE, DatasetError, Sample
from perception.data.stats import dataset_stats

# camvid_mask() on 12x16 = 192 px: 1 px unlabelled (IGNORE), road rows 8-11 = 64 px drivable, 127 px background.
# With min_area=1 each frame has 5 boxes: car x2 (two touching cars merged + one), pedestrian, cyclist, sign.


def test_stats_on_tiny_camvid(tmp_path):
    ds = build_dataset("camvid", make_camvid(tmp_path / "c", n=3), split="train", min_area=1)
    st = dataset_stats(ds)
    assert (st.listed, st.samples, st.with_seg, st.lane_labelled) == (3, 3, 3, 0)
    assert (st.with_boxes, st.nonempty_boxes, st.total_boxes) == (3, 3, 15)
    assert st.boxes_per_class == {"car": 6, "pedestrian": 3, "cyclist": 3, "traffic_sign": 3}
    assert st.ignored_per_class == {"car": 0, "pedestrian": 0, "cyclist": 0, "traffic_sign": 0}
    assert st.pixels_per_class == {"background": 381, "drivable": 192, "lane": 0}
    assert st.ignore_pixels == 3 and st.invalid_pixels == 0
    assert st.pixel_fraction == pytest.approx({"background": 127 / 191, "drivable": 64 / 191, "lane": 0.0})
    assert st.ignore_fraction == pytest.approx(1 / 192)
    assert st.image_sizes == {(16, 12): 3}
    assert st.skipped.total == 0 and st.dropped_boxes == 0
    assert st.boxes_from.total() == 3
    d = st.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["image_sizes"] == {"16x12": 3} and d["boxes"] == 15
    text = st.format()
    assert "3 loaded of 3 listed, 0 skipped" in text
    assert re.search(r"\n  drivable +0\.3351\n", text)  # 64 / 191
    assert re.search(r"\n  car +6 +0\n", text)
    assert "touching objects" in text


class _Fake(Dataset):
    """Two frames: one with boxes (one crowd, one label outside det_classes) and a seg with an invalid id,
    one with neither; a third raises."""

    kind = "fake"

    def __init__(self, root):
        super().__init__(root, class_map=ClassMap(det_classes=("car", "pedestrian")))
        self.names = ["a", "b", "c"]
        self._record_dropped(0, 4)
        self._record_dropped(0, 4)  # the same sample again: counted once

    def load(self, i):
        image = np.zeros((2, 3, 3), np.uint8)
        if i == 0:
            seg = np.array([[0, 1, 2], [IGNORE, IGNORE, 7]], np.uint8)
            boxes = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 2, 2]], np.float32)
            labels = np.array([1, 1, 5], np.int64)
            return Sample(image, "a", seg, True, boxes, labels, np.array([True, False, False]))
        if i == 1:
            return Sample(image, "b")
        raise DatasetError("c.png: cannot decode image")


def test_stats_counts_ignore_invalid_and_skips(tmp_path):
    with pytest.raises(DatasetError, match="c.png"):
        dataset_stats(_Fake(tmp_path))
    st = dataset_stats(_Fake(tmp_path), on_error="skip")
    assert (st.listed, st.samples, st.with_seg, st.lane_labelled, st.with_boxes) == (3, 2, 1, 1, 1)
    assert st.boxes_per_class == {"car": 0, "pedestrian": 2, "id 5": 1}
    assert st.ignored_per_class == {"car": 0, "pedestrian": 1, "id 5": 0}
    assert st.pixels_per_class == {"background": 1, "drivable": 1, "lane": 1}
    assert (st.ignore_pixels, st.invalid_pixels) == (2, 1)
    assert st.ignore_fraction == pytest.approx(2 / 6)
    assert st.skipped.total == 1 and st.skipped.examples == ["c.png: cannot decode image"]
    assert st.dropped_boxes == 4
    text = st.format()
    assert "2 loaded of 3 listed, 1 skipped" in text and "c.png: cannot decode image" in text
    assert "(invalid ids)" in text


def test_cli_data_stats_and_json(tmp_path, capsys):
    root = make_camvid(tmp_path / "camvid")
    out = tmp_path / "stats.json"
    code = main(["data", "stats", f"camvid:{root}", "--split", "val", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "camvid" in captured.out and "2 loaded of 2 listed, 0 skipped" in captured.out
    data = json.loads(out.read_text())
    assert data["samples"] == 2 and data["pixels_per_class"]["drivable"] == 128
    assert data["boxes"] == 0  # default min_area 20 px: the tiny blobs give no boxes


def test_cli_corrupt_image_raise_or_skip(tmp_path, capsys):
    root = make_camvid(tmp_path / "camvid", n=3)
    (root / "train" / "f1.png").write_bytes(b"not a png")
    code = main(["data", "stats", f"camvid:{root}"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "train/f1.png: cannot decode image" in lines[0] and "Traceback" not in err

    out = tmp_path / "s.json"
    code = main(["data", "stats", f"camvid:{root}", "--on-error", "skip", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 loaded of 3 listed, 1 skipped" in captured.out and "f1.png" in captured.out
    assert json.loads(out.read_text())["skipped"]["total"] == 1


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ("{root}", [], "no kind prefix: write KIND:PATH"),
        ("kitti:{root}", [], "unknown dataset kind 'kitti'"),
        ("camvid:{root}", ["--split", "test"], "no CamVid split 'test' (splits found: ['train', 'val']"),
        ("camvid:{root}/nowhere", [], "nowhere: CamVid root folder not found"),
        ("camvid:{root}", ["--json", "{root}/no/such/dir/x.json"], "x.json: cannot write"),
    ],
)
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, spec, extra, message):
    root = make_camvid(tmp_path / "camvid", n=1)
    argv = ["data", "stats", spec.format(root=root)] + [a.format(root=root) for a in extra]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_cli_data_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2
