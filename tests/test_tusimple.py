"""TuSimple lane evaluation: the metric on hand-made lanes, CULane F1, the loader and its errors, the
synthetic export, the predictions file, and `perception eval --data tusimple:DIR` end to end."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main
from perception.data.registry import build_dataset
from perception.data.sample import DatasetError
from perception.data.synth.generate import SynthOptions, synth_clip
from perception.data.synth.tusimple import LABEL_FILE, synth_tusimple_lanes, write_tusimple_synth
from perception.data.tusimple import (
    TusimpleDataset,
    label_line,
    order_left_to_right,
    resample_polyline,
    tusimple_h_samples,
)
from perception.eval.lanes import (
    CulaneAccumulator,
    LaneAccumulator,
    bench_frame,
    culane_frame,
    lane_angle,
    max_weight_matching,
)
from perception.eval.tusimple import PREDICTIONS_FILE, evaluate_tusimple, predicted_tusimple_lanes, submitted_lanes

REPO = Path(__file__).resolve().parent.parent
H = np.arange(160, 720, 10, dtype=np.float64)  # TuSimple's 56 rows
HW = (720, 1280)


def _line(x0: float, k: float = 0.0, rows: np.ndarray = H) -> np.ndarray:
    """x = x0 + k (y - 160) at every row."""
    return x0 + k * (rows - 160.0)


# --- the TuSimple metric ----------------------------------------------------------------------------------


def test_perfect_and_empty_predictions():
    gts = [_line(300, -0.5), _line(700, 0.5)]
    perfect = bench_frame([g.copy() for g in gts], gts, H)
    assert (perfect["acc"], perfect["fp"], perfect["fn"]) == (1.0, 0.0, 0.0)
    empty = bench_frame([], gts, H)
    assert (empty["acc"], empty["fp"], empty["fn"]) == (0.0, 0.0, 1.0)
    acc = LaneAccumulator()
    acc.add_sampled(gts, gts, H)
    acc.add_sampled([], gts, H)
    out = acc.compute()
    assert out["lanes.tusimple_acc"] == 0.5 and out["lanes.fn_rate"] == 0.5 and out["lanes.fp_rate"] == 0.0


@pytest.mark.parametrize(("shift", "matched"), [(19.0, True), (-19.0, True), (20.0, False), (21.0, False)])
def test_vertical_lane_threshold_is_20_px(shift, matched):
    gt = [_line(600)]
    frame = bench_frame([gt[0] + shift], gt, H)
    assert frame["fn"] == (0.0 if matched else 1.0)
    assert frame["acc"] == (1.0 if matched else 0.0)


@pytest.mark.parametrize("k", [0.5, 1.0, -0.9])
def test_slanted_lane_threshold_grows_with_one_over_cos(k):
    gt = _line(640, k)
    angle = lane_angle(gt, H)
    assert angle == pytest.approx(math.atan(k))
    thresh = 20.0 / math.cos(angle)
    assert thresh > 20.0
    assert bench_frame([gt + thresh - 0.3], [gt], H)["acc"] == 1.0  # beyond 20 px, inside 20 / cos
    assert bench_frame([gt + thresh + 0.3], [gt], H)["acc"] == 0.0


def test_threshold_is_in_label_pixels_at_any_image_size(tmp_path):
    """A 19 px error is within TuSimple's 20 px on a 320-wide image too: nothing scales with the width."""
    h = tusimple_h_samples(180)
    gt = _line(150, 0.0, h)
    root = _make_tusimple(tmp_path / "small", [("clips/a/1.jpg", [gt], h)], size=(320, 180))
    fake = FakePredictor({"clips/a/1.jpg": [np.column_stack([np.full(2, 169.0), [h[0], h[-1]]])]})
    m = evaluate_tusimple(fake, TusimpleDataset(root)).metrics
    assert m["lanes.tusimple_acc"] == 1.0 and m["lanes.fn_rate"] == 0.0


def test_more_than_four_gt_lanes_drop_the_worst():
    gts = [_line(x) for x in (100, 350, 600, 850, 1100)]
    four = bench_frame(gts[:4], gts, H)  # the fifth missed: its 0 dropped, its FN forgiven
    assert (four["acc"], four["fp"], four["fn"]) == (1.0, 0.0, 0.0)
    half = gts[4].copy()
    half[len(H) // 2 :] = -2  # matches on half its rows: accuracy 0.5, the worst
    five = bench_frame(gts[:4] + [half], gts, H)
    assert (five["acc"], five["fn"]) == (1.0, 0.0)
    three = bench_frame(gts[:3], gts, H)  # two missed, one forgiven: (3 - 0) / 4, FN 1 / 4
    assert (three["acc"], three["fn"]) == (0.75, 0.25)


def test_run_time_rule_only_when_given():
    gt = [_line(600)]
    assert bench_frame(gt, gt, H, run_time_ms=200.0)["acc"] == 1.0
    slow = bench_frame(gt, gt, H, run_time_ms=200.5)
    assert (slow["acc"], slow["fp"], slow["fn"], slow["rejected"]) == (0.0, 0.0, 1.0, 1)


# --- CULane F1 --------------------------------------------------------------------------------------------


def test_culane_identical_and_shifted_lanes():
    gts = [_line(300, -0.4), _line(800, 0.4)]
    same = culane_frame([g.copy() for g in gts], gts, H, HW)
    assert same == {"tp": 2, "fp": 0, "fn": 0, "pred": 2, "gt": 2}
    far = culane_frame([g + 31 for g in gts], gts, H, HW)  # more than the 30 px width: no overlap at all
    assert (far["tp"], far["fp"], far["fn"]) == (0, 2, 2)
    near = culane_frame([gts[0] + 5], [gts[0]], H, HW)  # IoU ~ 25 / 35
    far15 = culane_frame([gts[0] + 15], [gts[0]], H, HW)  # IoU ~ 15 / 45
    assert near["tp"] == 1 and far15["tp"] == 0
    acc = CulaneAccumulator()
    acc.add_sampled(gts, gts, H, HW)
    assert acc.compute()["lanes.culane_f1"] == 1.0
    acc.add_sampled([g + 31 for g in gts], gts, H, HW)
    acc.add_sampled([], gts, H, HW)
    out = acc.compute()
    assert (out["lanes.culane_tp"], out["lanes.culane_fp"], out["lanes.culane_fn"]) == (2, 2, 4)
    assert out["lanes.culane_precision"] == 0.5 and out["lanes.culane_recall"] == pytest.approx(2 / 6)
    assert out["lanes.culane_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 4))
    assert math.isnan(CulaneAccumulator().compute()["lanes.culane_f1"])


def test_culane_matching_is_one_to_one_and_optimal():
    # One prediction between two gt lanes overlaps both; it may be counted once only.
    gts = [_line(600), _line(620)]
    frame = culane_frame([_line(610)], gts, H, HW)
    assert (frame["tp"], frame["fp"], frame["fn"]) == (1, 0, 1)
    # Greedy (largest first) would take 0.9 and leave 0.0; the optimum pairs 0.6 + 0.8.
    assert max_weight_matching(np.array([[0.9, 0.6], [0.8, 0.0]])) == [(0, 1), (1, 0)]


def _brute_force(w: np.ndarray) -> float:
    n, m = w.shape
    if n > m:
        return _brute_force(w.T)
    return max((sum(w[i, c] for i, c in enumerate(cols)) for cols in itertools.permutations(range(m), n)), default=0)


@pytest.mark.parametrize("seed", range(40))
def test_max_weight_matching_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = (int(v) for v in rng.integers(0, 6, 2))
    w = rng.random((n, m))
    if seed % 4 == 0:
        w = np.round(w, 1)  # ties
    pairs = max_weight_matching(w)
    assert len(pairs) == min(n, m)
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
    assert sum(w[a, b] for a, b in pairs) == pytest.approx(_brute_force(w), abs=1e-12)


# --- predicted lanes --------------------------------------------------------------------------------------


def test_predicted_lanes_are_sampled_clipped_and_ordered():
    rows = np.array([100.0, 200.0, 300.0, 400.0])
    right = np.array([[500.0, 100.0], [700.0, 400.0]])
    left = np.array([[300.0, 150.0], [100.0, 400.0]])  # starts below row 100
    off = np.array([[1000.0, 100.0], [1300.0, 400.0]])  # leaves a 1280-wide image
    outside = np.array([[-50.0, 100.0], [-10.0, 400.0]])  # never in the image: dropped
    lanes = predicted_tusimple_lanes([right, off, outside, left], rows, 1280)
    assert [xs.tolist() for xs in lanes] == [
        [-2.0, 260.0, 180.0, 100.0],
        [500.0, 567.0, 633.0, 700.0],
        [1000.0, 1100.0, 1200.0, -2.0],
    ]
    # bottom-most common row: 300 (the off-image lane's last present row)
    assert order_left_to_right([np.array([5.0, 9.0, -2.0]), np.array([7.0, 1.0, 0.0])], np.array([0, 1, 2])) == [1, 0]


# --- the loader -------------------------------------------------------------------------------------------


def _make_tusimple(root: Path, entries, size=(640, 360), label_file: str = "label_data_0000.json") -> Path:
    """entries: (raw_file, [x arrays], h_samples); writes grey images of ``size`` and one label file."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for raw_file, lanes, h in entries:
        path = root / raw_file
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, np.uint8))
        lines.append(label_line(raw_file, lanes, h))
    (root / label_file).write_text("\n".join(lines) + "\n")
    return root


def test_loader_reads_samples_and_splits(tmp_path):
    h = tusimple_h_samples(360)
    root = _make_tusimple(tmp_path / "ts", [("clips/a/20.jpg", [_line(100, 0, h), _line(400, 0, h)], h)])
    (root / "test_label.json").write_text(label_line("clips/a/20.jpg", [_line(50, 0, h)], h) + "\n\n")
    ds = build_dataset("tusimple", root, split="train")
    assert isinstance(ds, TusimpleDataset) and len(ds) == 1 and ds.names == ["clips/a/20.jpg"]
    s = ds[0]
    assert s.image.shape == (360, 640, 3) and s.seg is None and s.boxes is None
    assert s.meta["h_samples"] == h.tolist() and [xs[0] for xs in s.meta["lanes"]] == [100.0, 400.0]
    assert s.meta["label"].endswith("label_data_0000.json:1")
    assert [xs[0] for xs in TusimpleDataset(root, split="test")[0].meta["lanes"]] == [50.0]
    assert len(TusimpleDataset(root, split="label_data_0000")) == 1
    with pytest.raises(DatasetError, match="labelled twice"):
        TusimpleDataset(root, split="all")  # both files label the same image


def _bad(tmp_path: Path, line: str) -> Path:
    root = tmp_path / "bad"
    h = tusimple_h_samples(360)
    good = label_line("clips/a/1.jpg", [_line(100, 0, h)], h)
    _make_tusimple(root, [("clips/a/1.jpg", [_line(100, 0, h)], h)])
    (root / "label_data_0000.json").write_text(good + "\n" + line + "\n")
    return root


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"lanes": [[1, 2]], "h_samples": [10, 20], "raw_file": "clips/a/2.jpg"', "not valid JSON"),
        ('{"lanes": [[1, 2]], "h_samples": [10, 20, 30], "raw_file": "clips/a/1.jpg"}', "lane 0 has 2 x values"),
        ('{"lanes": [[1, 2]], "raw_file": "clips/a/1.jpg"}', "missing key 'h_samples'"),
        ('{"lanes": [[1, 2]], "h_samples": [10, 20], "raw_file": "clips/b/9.jpg"}', "image 'clips/b/9.jpg' not found"),
        ('{"lanes": [[1, "x"]], "h_samples": [10, 20], "raw_file": "clips/a/1.jpg"}', "lane 0 must be a list of"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path, capsys, line, message):
    root = _bad(tmp_path, line)
    with pytest.raises(DatasetError, match=message) as err:
        TusimpleDataset(root)
    assert str(err.value).startswith(f"{root / 'label_data_0000.json'}:2: ")
    # the command: exit 1 and one line
    assert main(["eval", "--data", f"tusimple:{root}", "--out", str(tmp_path / "out"), "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert lines[0].startswith(f"error: {root / 'label_data_0000.json'}:2: ")


def test_loader_without_label_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no TuSimple label file"):
        TusimpleDataset(tmp_path / "empty")


def test_h_samples_follow_tusimple():
    assert tusimple_h_samples(720).tolist() == list(range(160, 711, 10))
    assert tusimple_h_samples(360).tolist() == list(range(80, 351, 10))
    assert tusimple_h_samples(590)[[0, -1]].tolist() == [130, 580]


# --- evaluation with a fake predictor and the predictions file -------------------------------------------


class FakePredictor:
    """Known polylines per raw_file; records the clips it was told to start."""

    name = "fake"

    def __init__(self, lanes: dict[str, list[np.ndarray]]):
        self.lanes = lanes
        self.clips: list[int] = []
        self.frames: list[tuple[str, float]] = []

    def start_clip(self) -> None:
        self.clips.append(len(self.frames))

    def predict_lanes(self, frame):
        self.frames.append((frame.source, frame.timestamp_s))
        return self.lanes.get(frame.source, [])


def _poly(xs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    ok = xs >= 0
    return np.column_stack([xs[ok], rows[ok]])


def test_evaluate_with_fake_predictor_writes_submission_lines(tmp_path):
    h = tusimple_h_samples(360)
    gt_a = [_line(100, -0.3, h), _line(400, 0.6, h)]
    gt_b = [_line(200, -0.5, h), _line(420, 0.5, h), _line(600, 1.0, h)]
    root = _make_tusimple(
        tmp_path / "ts",
        [("clips/a/20.jpg", gt_a, h), ("clips/b/19.jpg", gt_b, h), ("clips/b/20.jpg", gt_b, h)],
    )
    fake = FakePredictor(
        {
            "clips/a/20.jpg": [_poly(gt_a[1], h), _poly(gt_a[0], h)],  # right lane first: reordered
            "clips/b/19.jpg": [_poly(gt_b[0] + 40, h)],  # 40 px off: no match
        }
    )
    result = evaluate_tusimple(fake, TusimpleDataset(root), tmp_path / PREDICTIONS_FILE)
    m = result.metrics
    assert fake.clips == [0, 1]  # a new clip at frames 0 and 1, not 2
    assert [t for _, t in fake.frames] == [1.0, 0.95, 1.0]  # file number / 20 frames/s
    assert m["lanes.tusimple_acc"] == pytest.approx((1 + 0 + 0) / 3)
    assert m["lanes.fp_rate"] == pytest.approx((0 + 1 + 0) / 3)
    assert m["lanes.fn_rate"] == pytest.approx((0 + 1 + 1) / 3)
    assert (m["lanes.culane_tp"], m["lanes.culane_fp"], m["lanes.culane_fn"]) == (2, 1, 6)
    assert m["frames"] == 3 and m["skipped"] == 0 and m["lanes.frames_over_200ms"] == 0
    lines = [json.loads(s) for s in (tmp_path / PREDICTIONS_FILE).read_text().splitlines()]
    assert [d["raw_file"] for d in lines] == ["clips/a/20.jpg", "clips/b/19.jpg", "clips/b/20.jpg"]
    assert all(set(d) == {"raw_file", "lanes", "run_time"} for d in lines)
    assert all(isinstance(d["run_time"], float) and d["run_time"] >= 0 for d in lines)
    first = lines[0]["lanes"]
    assert len(first) == 2 and all(len(xs) == len(h) and all(isinstance(x, int) for x in xs) for xs in first)
    assert first == [[int(round(x)) for x in gt_a[0]], [int(round(x)) for x in gt_a[1]]]  # left to right
    assert lines[2]["lanes"] == []
    assert [f["acc"] for f in result.frames] == [1.0, 0.0, 0.0]


# --- the synthetic export ---------------------------------------------------------------------------------

SMALL = SynthOptions(size=(320, 180))


def test_synthetic_export_round_trip(tmp_path):
    out = tmp_path / "syn"
    out.mkdir()
    report = write_tusimple_synth(out, clips=3, clip_frames=2, seed=7, opts=SMALL, label_frames="all")
    assert report["counts"]["images"] == 6 and report["counts"]["labelled"] == 6
    ds = TusimpleDataset(out)
    assert ds.names[:2] == ["clips/clip_000/1.jpg", "clips/clip_000/2.jpg"] and len(ds) == 6
    h = tusimple_h_samples(180)
    checked = 0
    for c in range(3):
        for t, truth in enumerate(synth_clip(c, 2, seed=7, opts=SMALL)):
            sample = ds[ds.names.index(f"clips/clip_{c:03d}/{t + 1}.jpg")]
            assert sample.image.shape == (180, 320, 3)
            assert sample.meta["h_samples"] == h.tolist()
            lanes = [np.asarray(xs) for xs in sample.meta["lanes"]]
            # every label lane is one of the truth's painted lines, as the renderer projected it
            refs = [resample_polyline(np.reshape(ln["points_image"], (-1, 2)), h) for ln in truth.meta["lanes"]]
            used = set()
            for xs in lanes:
                assert (xs >= 0).sum() >= 2 and np.all((xs == -2) | ((xs >= 0) & (xs < 320)))
                errs = []
                for r in refs:
                    both = (xs >= 0) & (r >= 0)
                    errs.append(np.abs(xs[both] - r[both]).max() if both.sum() >= 2 else np.inf)
                best = int(np.argmin(errs))
                assert errs[best] <= 1.0 and best not in used
                used.add(best)
                checked += 1
            bottoms = [xs[(xs >= 0)][-1] for xs in lanes]
            if len(lanes) > 1 and min(h[xs >= 0][-1] for xs in lanes) == h[-1]:
                assert bottoms == sorted(bottoms)  # left to right
            painted = [r for r, ln in zip(refs, truth.meta["lanes"], strict=True) if (r >= 0).sum() >= 4]
            hood = truth.meta["effects"]["hood"]
            if not hood:
                assert len(lanes) >= min(len(painted), 5)
    assert checked >= 6


def test_synthetic_lanes_of_a_hand_made_frame():
    """Pinhole camera 1.5 m up, level: a line at lateral offset Y is at u = cx - Y (v - cy) / 1.5 on row v."""
    f, cx, cy, height = 400.0, 319.5, 179.5, 1.5
    camera = {
        "name": "flat",
        "image_size": [640, 360],
        "camera_matrix": [[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]],
        "dist_coeffs": [],
        "mounting": {"height_m": height, "pitch_deg": 0.0, "yaw_deg": 0.0, "roll_deg": 0.0},
    }
    ahead = np.arange(1.0, 100.1, 2.0)

    def line(y: float, style: str) -> dict:
        return {"side": "x", "style": style, "points_vehicle_m": [[x, y, 0.0] for x in ahead]}

    lines = [line(-1.75, "dashed"), line(5.25, "none"), line(1.75, "solid")]
    rows = tusimple_h_samples(360)
    lanes = synth_tusimple_lanes({"camera": camera, "lanes": lines}, (360, 640), rows)
    assert len(lanes) == 2  # the unpainted line is not a lane
    far_row = cy + f * height / ahead[-1]  # the 100 m end
    for xs, y in zip(lanes, (1.75, -1.75), strict=True):  # left (y > 0) first
        expect = np.where(rows >= far_row, cx - y * (rows - cy) / height, -2.0)
        assert np.abs(xs - expect).max() < 0.01
    hooded = synth_tusimple_lanes({"camera": camera, "lanes": lines, "effects": {"hood": 0.1}}, (360, 640), rows)
    hidden = hooded[0] != lanes[0]
    assert hidden.sum() >= 2 and np.all(hooded[0][hidden] == -2) and rows[hidden].min() >= 320


def test_synthetic_export_labels_the_last_frame_by_default(tmp_path):
    out = tmp_path / "syn"
    out.mkdir()
    write_tusimple_synth(out, clips=2, clip_frames=3, seed=2, opts=SMALL)
    lines = [json.loads(s) for s in (out / LABEL_FILE).read_text().splitlines()]
    assert [d["raw_file"] for d in lines] == ["clips/clip_000/3.jpg", "clips/clip_001/3.jpg"]
    assert sorted(p.name for p in (out / "clips" / "clip_001").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
    truth = list(synth_clip(1, 3, seed=2, opts=SMALL))[-1]
    expected = synth_tusimple_lanes(truth.meta, (180, 320), tusimple_h_samples(180))
    assert lines[1]["lanes"] == [[int(round(x)) if x >= 0 else -2 for x in xs] for xs in expected]


# --- end to end -------------------------------------------------------------------------------------------


def test_cli_synth_and_eval_with_the_shipped_model(tmp_path, capsys):
    model = REPO / "models" / "default.onnx"
    if not model.is_file():
        pytest.skip(f"{model} not found")
    data, out = tmp_path / "syn", tmp_path / "eval"
    argv = ["synth", "--format", "tusimple", "--clips", "2", "--clip-frames", "2", "--size", "320x180"]
    assert main([*argv, "--seed", "4", "--workers", "1", "--out", str(data), "-q"]) == 0
    assert json.loads((data / "synth_report.json").read_text())["counts"]["labelled"] == 2
    assert main(["synth", "--format", "tusimple", "--out", str(tmp_path / "none"), "-q"]) == 1  # no --clips
    assert "--clips" in capsys.readouterr().err
    argv = ["eval", "--model", str(model), "--model", "default", "--data", f"tusimple:{data}", "--out", str(out), "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lanes.tusimple_acc" in printed and "lanes.culane_f1" in printed
    for name in ("default.onnx", "default"):
        metrics = json.loads((out / name / "metrics.json").read_text())["metrics"]
        for key in ("lanes.tusimple_acc", "lanes.fp_rate", "lanes.fn_rate"):
            assert 0.0 <= metrics[key] <= 1.0
        assert metrics["frames"] == 2 and metrics["lanes.gt_lanes"] >= 2
        lines = [json.loads(s) for s in (out / name / PREDICTIONS_FILE).read_text().splitlines()]
        assert [d["raw_file"] for d in lines] == ["clips/clip_000/2.jpg", "clips/clip_001/2.jpg"]
        assert all(len(xs) == len(tusimple_h_samples(180)) for d in lines for xs in d["lanes"])
    assert "Lanes (TuSimple format)" in (out / "report.md").read_text()
    assert main(["eval", "--model", "peer:stack", "--data", f"tusimple:{data}", "--out", str(out), "-q"]) == 1
    assert "give a model file or 'default'" in capsys.readouterr().err


def test_a_submission_keeps_the_named_lanes_first_and_at_most_five():
    """TuSimple fails a frame with more than 2 predictions over its labels: the submission keeps 5 lines,
    the ego and next ones before any "other", the more confident first."""
    from perception.frames import Lane

    def lane(side, confidence):
        return Lane(side=side, coeffs=None, x_range_m=None, confidence=confidence, points_image=np.zeros((2, 2)))

    lanes = [
        lane("other", 0.9),
        lane("next_right", 0.2),
        lane("other", 0.3),
        lane("ego_right", 0.8),
        lane("other", 0.6),
        lane("ego_left", 0.4),
        lane("next_left", 0.5),
    ]
    kept = submitted_lanes(lanes)
    assert [(k.side, k.confidence) for k in kept] == [
        ("ego_left", 0.4),
        ("ego_right", 0.8),
        ("next_left", 0.5),
        ("next_right", 0.2),
        ("other", 0.9),
    ]
    assert submitted_lanes(lanes[:3]) == [lanes[1], lanes[0], lanes[2]]  # fewer than the limit: all of them
