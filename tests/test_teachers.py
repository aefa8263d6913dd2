"""COCO teachers, weighted box fusion, the numpy Darknet engine and `perception label`.

Fusion, decoding, the Darknet layers and the labelling rules are checked against hand-computed values
and slow references; the adapters themselves run on real frames from ../shared (skipped, with a message,
when the weights or frames are absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from perception.errors import ModelError

WEIGHTS = Path(os.environ.get("PERCEPTION_WEIGHTS", SHARED_DATA.parent / "weights"))
HIGHWAY = SHARED_DATA / "frames" / "udacity_highway"
TEACHER_FILES = ("yolox_nano_coco_416.onnx", "picodet_xs_coco_320.onnx", "yolo_fastest_1.1_xl_coco_320.weights")


def require_weights() -> Path:
    missing = [f for f in (*TEACHER_FILES, "twinlitenetplus_small_bdd100k_384x640.onnx") if not (WEIGHTS / f).is_file()]
    if missing:
        pytest.skip(f"teacher weights {missing} not found in {WEIGHTS} (set PERCEPTION_WEIGHTS)")
    if not (HIGHWAY / "test1.jpg").is_file():
        pytest.skip(f"real frames not found in {HIGHWAY} (set PERCEPTION_SHARED_DATA)")
    return WEIGHTS


# -- weighted box fusion ------------------------------------------------------------------------------


def wbf(*args, **kw):
    from perception.teachers.box_fusion import weighted_boxes_fusion

    return weighted_boxes_fusion(*args, **kw)


def arr(*rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def test_wbf_two_models_agree_weighted_mean_and_full_score():
    a, b = arr([0, 0, 10, 10]), arr([1, 1, 11, 11])  # IoU 81 / 119 = 0.68
    out = wbf([a, b], [np.array([0.9]), np.array([0.6])], [np.array([0]), np.array([0])], iou_thr=0.55)
    assert len(out) == 1
    expected = (0.9 * a[0] + 0.6 * b[0]) / 1.5  # [0.4, 0.4, 10.4, 10.4]
    np.testing.assert_allclose(out.boxes[0], expected, atol=1e-5)
    assert out.scores[0] == pytest.approx((0.9 + 0.6) / 2 * 2 / 2)
    assert out.models.tolist() == [[True, True]] and out.counts.tolist() == [2]
    assert out.model_indices(0) == (0, 1)
    assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64


def test_wbf_one_model_of_two_halves_the_score():
    out = wbf([arr([0, 0, 10, 10]), arr()], [np.array([0.8]), np.zeros(0)], [np.array([2]), np.zeros(0, int)])
    assert out.scores.tolist() == pytest.approx([0.4])
    np.testing.assert_array_equal(out.boxes, arr([0, 0, 10, 10]))
    assert out.labels.tolist() == [2] and out.models.tolist() == [[True, False]]


def test_wbf_different_classes_never_fuse():
    box = arr([5, 5, 20, 20])
    out = wbf([box, box], [np.array([0.9]), np.array([0.7])], [np.array([0]), np.array([1])])
    assert sorted(out.labels.tolist()) == [0, 1]
    assert out.scores.tolist() == pytest.approx([0.45, 0.35])  # each found by one model of two
    assert out.models.tolist() == [[True, False], [False, True]]


def test_wbf_empty_inputs():
    out = wbf([arr(), arr()], [np.zeros(0), np.zeros(0)], [np.zeros(0, int), np.zeros(0, int)])
    assert len(out) == 0 and out.boxes.shape == (0, 4) and out.models.shape == (0, 2)
    out = wbf([], [], [])
    assert len(out) == 0 and out.models.shape == (0, 0)


def test_wbf_does_not_mutate_inputs():
    rng = np.random.default_rng(0)
    boxes = [
        np.sort(rng.uniform(0, 100, (6, 4)).astype(np.float32).reshape(6, 2, 2), 1).reshape(6, 4) for _ in range(3)
    ]
    boxes = [b[:, [0, 2, 1, 3]] for b in boxes]  # x1 <= x2, y1 <= y2
    scores = [rng.uniform(0, 1, 6).astype(np.float32) for _ in range(3)]
    labels = [rng.integers(0, 2, 6) for _ in range(3)]
    copies = [[x.copy() for x in group] for group in (boxes, scores, labels)]
    wbf(boxes, scores, labels, weights=[1, 2, 1], iou_thr=0.3, skip_box_thr=0.2)
    for group, saved in zip((boxes, scores, labels), copies, strict=True):
        for x, y in zip(group, saved, strict=True):
            np.testing.assert_array_equal(x, y)


def test_wbf_iou_exactly_at_threshold_does_not_fuse():
    a, b = arr([0, 0, 2, 1]), arr([1, 0, 3, 1])  # intersection 1, union 3: IoU exactly 1/3
    s, lab = [np.array([0.9]), np.array([0.8])], [np.array([0]), np.array([0])]
    assert len(wbf([a, b], s, lab, iou_thr=1 / 3)) == 2
    assert len(wbf([a, b], s, lab, iou_thr=1 / 3 - 1e-9)) == 1


def test_wbf_model_weights():
    a, b = arr([0, 0, 10, 10]), arr([0, 0, 12, 12])  # IoU 100 / 144
    out = wbf([a, b], [np.array([0.9]), np.array([0.6])], [np.array([0]), np.array([0])], weights=[2, 1])
    np.testing.assert_allclose(out.boxes[0], (1.8 * a[0] + 0.6 * b[0]) / 2.4, atol=1e-5)
    assert out.scores[0] == pytest.approx((1.8 + 0.6) / 3)  # weighted mean score x (2 + 1) / 3
    alone = wbf([arr(), b], [np.zeros(0), np.array([0.6])], [np.zeros(0, int), np.array([0])], weights=[2, 1])
    assert alone.scores[0] == pytest.approx(0.6 / 3)


def test_wbf_counts_models_not_boxes_and_skips_low_scores():
    # model 0 gives two boxes on one object: they fuse, but it is still one model of two
    m0 = arr([0, 0, 10, 10], [0, 0, 10, 11])
    out = wbf([m0, arr()], [np.array([0.8, 0.4]), np.zeros(0)], [np.array([0, 0]), np.zeros(0, int)])
    assert len(out) == 1 and out.counts.tolist() == [2]
    assert out.scores[0] == pytest.approx((0.8 + 0.4) / 2 * 1 / 2)
    skipped = wbf(
        [m0, arr()], [np.array([0.8, 0.4]), np.zeros(0)], [np.array([0, 0]), np.zeros(0, int)], skip_box_thr=0.5
    )
    assert skipped.counts.tolist() == [1] and skipped.scores[0] == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(5))
def test_wbf_invariants_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 4))
    boxes, scores, labels = [], [], []
    for _ in range(m):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 50, (n, 2))
        wh = rng.uniform(1, 30, (n, 2))
        boxes.append(np.concatenate([xy, xy + wh], 1).astype(np.float32))
        scores.append(rng.uniform(0, 1, n).astype(np.float32))
        labels.append(rng.integers(0, 3, n))
    out = wbf(boxes, scores, labels, iou_thr=0.5, skip_box_thr=0.1)
    kept = sum(int((s >= 0.1).sum()) for s in scores)
    assert out.counts.sum() == kept
    assert (out.models.sum(1) >= 1).all() and (
        out.scores <= max([s.max() for s in scores if len(s)] + [0]) + 1e-6
    ).all()
    assert (np.diff(out.scores) <= 0).all()
    assert (out.boxes[:, 2] >= out.boxes[:, 0]).all() and (out.boxes[:, 3] >= out.boxes[:, 1]).all()


def test_wbf_rejects_bad_input():
    with pytest.raises(ValueError, match="model 0"):
        wbf([arr([0, 0, 1, 1])], [np.array([0.5, 0.6])], [np.array([0])])
    with pytest.raises(ValueError, match="weights"):
        wbf([arr()], [np.zeros(0)], [np.zeros(0, int)], weights=[0])


# -- YOLOX decoding, tiles, Darknet layers ------------------------------------------------------------


def test_yolox_decode_matches_a_hand_computed_cell():
    from perception.teachers.detectors import best_class_nms, decode_yolox

    out = np.zeros((52 * 52 + 26 * 26 + 13 * 13, 85), np.float32)
    row = 52 * 52 + 5 * 26 + 3  # stride 16, cell x=3, y=5
    out[row, :4] = [0.5, 0.25, np.log(2.0), 0.0]
    out[row, 4] = 0.8  # objectness (already sigmoid)
    out[row, 5 + 2] = 0.5  # car
    out[row, 5 + 7] = 0.25  # truck
    boxes, scores = decode_yolox(out, (416, 416))
    # cx = (0.5 + 3) * 16 = 56, cy = (0.25 + 5) * 16 = 84, w = 2 * 16 = 32, h = 1 * 16 = 16
    np.testing.assert_allclose(boxes[row], [40, 76, 72, 92], atol=1e-4)
    assert scores[row, 2] == pytest.approx(0.4) and scores[row, 7] == pytest.approx(0.2)
    # first row: stride 8 cell (0, 0), zero offsets: a 8x8 box centred at (0, 0); last row: stride 32 cell (12, 12)
    np.testing.assert_allclose(boxes[0], [-4, -4, 4, 4], atol=1e-5)
    np.testing.assert_allclose(boxes[-1], [12 * 32 - 16, 12 * 32 - 16, 12 * 32 + 16, 12 * 32 + 16], atol=1e-4)
    b, s, lab = best_class_nms(boxes, scores, 0.1, 0.65, 100)
    assert lab.tolist() == [2] and s.tolist() == pytest.approx([0.4])  # best class only, as upstream
    np.testing.assert_allclose(b[0], [40, 76, 72, 92], atol=1e-4)
    with pytest.raises(ValueError, match="YOLOX output"):
        decode_yolox(out[:-1], (416, 416))


def test_merge_riders_turns_a_person_on_a_bicycle_into_one_cyclist_box():
    from perception.teachers.detectors import CocoDetections, merge_riders, to_prediction

    dets = CocoDetections.make(
        [[100, 50, 140, 150], [90, 100, 150, 160], [300, 50, 340, 150], [400, 120, 460, 160], [200, 60, 230, 150]],
        [0.9, 0.7, 0.8, 0.6, 0.1],
        [0, 1, 0, 1, 0],  # rider, its bicycle, a pedestrian, a parked bicycle, a weak person
    )
    saved = dets.boxes.copy()
    out = merge_riders(dets)
    np.testing.assert_array_equal(dets.boxes, saved)  # input untouched
    assert out.labels.tolist() == [1, 0, 1, 0]
    np.testing.assert_array_equal(out.boxes[0], [90, 50, 150, 160])  # union of rider and bicycle
    assert out.scores[0] == pytest.approx(0.8)  # mean of 0.9 and 0.7
    pred = to_prediction(out, {0: 1, 1: 2})
    assert sorted(pred.labels.tolist()) == [1, 1, 2, 2]
    # a person beside a bicycle (no horizontal overlap) or below it is not a rider
    apart = CocoDetections.make([[0, 0, 10, 40], [20, 20, 40, 40]], [0.9, 0.9], [0, 3])
    assert merge_riders(apart) is apart
    under = CocoDetections.make([[0, 30, 20, 80], [0, 0, 20, 40]], [0.9, 0.9], [0, 3])
    assert merge_riders(under) is under


def test_ensemble_merges_a_fused_pedestrian_riding_a_fused_cyclist():
    from perception.teachers.box_fusion import FusedBoxes
    from perception.teachers.ensemble import merge_fused_riders

    fused = FusedBoxes(
        arr([90, 50, 150, 160], [100, 45, 140, 150], [300, 50, 340, 150]),
        np.array([0.5, 0.3, 0.6], np.float32),
        np.array(
            [2, 1, 1], np.int64
        ),  # cyclist (rider + bike from two teachers), its rider seen by the third, a pedestrian
        np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1]], bool),
        np.array([2, 1, 3], np.int64),
    )
    out = merge_fused_riders(fused)
    assert out.labels.tolist() == [1, 2] and out.scores.tolist() == pytest.approx([0.6, 0.5])
    np.testing.assert_array_equal(out.boxes[1], [90, 45, 150, 160])
    assert out.models[1].tolist() == [True, True, True] and out.counts.tolist() == [3, 3]
    assert fused.boxes[0].tolist() == [90, 50, 150, 160]  # input untouched


def test_tile_grid_covers_the_frame_at_the_zoom():
    from perception.teachers.detectors import tile_grid

    tiles = tile_grid((360, 480), 1.3)
    assert len(tiles) == 4
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in tiles} == {(370, 277)}
    assert min(t[0] for t in tiles) == 0 and max(t[2] for t in tiles) == 480
    assert min(t[1] for t in tiles) == 0 and max(t[3] for t in tiles) == 360
    with pytest.raises(ValueError):
        tile_grid((360, 480), 1.0)


def _naive_conv(x, kernel, bias, stride, pad, groups):
    c, h, w = x.shape
    f, cg, k, _ = kernel.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((f, ho, wo), np.float64)
    fg = f // groups
    for o in range(f):
        g = o // fg
        for i in range(ho):
            for j in range(wo):
                patch = xp[g * cg : (g + 1) * cg, i * stride : i * stride + k, j * stride : j * stride + k]
                out[o, i, j] = (patch * kernel[o]).sum() + bias[o]
    return out


@pytest.mark.parametrize(
    "c,f,k,stride,pad,groups",
    [(3, 4, 3, 2, 1, 1), (5, 6, 1, 1, 0, 1), (4, 4, 3, 1, 1, 4), (4, 4, 5, 2, 2, 4), (4, 6, 3, 1, 1, 2)],
)
def test_darknet_conv_matches_a_naive_loop(c, f, k, stride, pad, groups):
    from perception.teachers.darknet import _conv

    rng = np.random.default_rng(c * 100 + f * 10 + k)
    x = rng.normal(size=(c, 9, 11)).astype(np.float32)
    kernel = rng.normal(size=(f, c // groups, k, k)).astype(np.float32)
    bias = rng.normal(size=f).astype(np.float32)
    np.testing.assert_allclose(
        _conv(x, kernel, bias, stride, pad, groups), _naive_conv(x, kernel, bias, stride, pad, groups), atol=1e-4
    )


@pytest.mark.parametrize("size,stride", [(3, 1), (5, 1), (9, 1), (2, 2), (3, 2)])
def test_darknet_maxpool_matches_a_naive_loop(size, stride):
    from perception.teachers.darknet import _maxpool

    x = np.random.default_rng(size).normal(size=(2, 8, 10)).astype(np.float32)
    pad = size - 1
    ho, wo = (8 + pad - size) // stride + 1, (10 + pad - size) // stride + 1
    ref = np.full((2, ho, wo), -np.inf, np.float32)
    for i in range(ho):
        for j in range(wo):
            for dy in range(size):
                for dx in range(size):
                    y, xx = i * stride - pad // 2 + dy, j * stride - pad // 2 + dx
                    if 0 <= y < 8 and 0 <= xx < 10:
                        ref[:, i, j] = np.maximum(ref[:, i, j], x[:, y, xx])
    np.testing.assert_array_equal(_maxpool(x, size, stride, pad), ref)


TINY_CFG = """[net]
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=4
groups=4
size=3
stride=1
pad=1
batch_normalize=1
activation=linear

[shortcut]
from=-2
activation=linear

[maxpool]
size=3
stride=1

[route]
layers=-1,-3

[upsample]
stride=2

[dropout]
probability=.1

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=2,3, 4,5, 6,7
classes=2
num=3
"""


def _tiny_darknet(tmp_path, extra_values: int = 0) -> tuple[Path, Path, dict]:
    """A tiny cfg and a weights file with known values (BN: scale 2, mean 1, var 3, bias 0.5)."""
    rng = np.random.default_rng(7)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    layers = {}
    values = []
    for name, f, cg, k, bn in (("c0", 4, 3, 3, True), ("c1", 4, 1, 3, True), ("c2", 14, 8, 1, False)):
        bias = np.full(f, 0.5, np.float32)
        kernel = rng.normal(size=(f, cg, k, k)).astype(np.float32)
        values.append(bias)
        if bn:
            values += [np.full(f, 2.0, np.float32), np.full(f, 1.0, np.float32), np.full(f, 3.0, np.float32)]
        values.append(kernel.ravel())
        layers[name] = (kernel, bn)
    values.append(np.zeros(extra_values, np.float32))
    weights = tmp_path / "tiny.weights"
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    weights.write_bytes(header + np.concatenate(values).tobytes())
    return cfg, weights, layers


def test_darknet_engine_runs_a_tiny_network_like_a_reference(tmp_path):
    from perception.teachers.darknet import DarknetNet

    cfg, weights, layers = _tiny_darknet(tmp_path)
    net = DarknetNet(cfg, weights)
    assert net.input_hw == (8, 8) and len(net.heads) == 1
    x = np.random.default_rng(1).uniform(0, 1, (3, 8, 8)).astype(np.float32)

    def bn_conv(inp, kernel, stride, pad, groups):
        y = _naive_conv(inp, kernel, np.zeros(len(kernel)), stride, pad, groups)
        return (y - 1.0) / np.sqrt(3.0 + 1e-6) * 2.0 + 0.5

    a = bn_conv(x, layers["c0"][0], 2, 1, 1)
    a = np.maximum(a, 0.1 * a)  # leaky
    b = bn_conv(a, layers["c1"][0], 1, 1, 4)  # linear
    s = a + b  # shortcut
    p = np.stack(
        [
            [[s[c, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].max() for j in range(4)] for i in range(4)]
            for c in range(4)
        ]
    )
    r = np.concatenate([p, b], 0).repeat(2, 1).repeat(2, 2)  # route -1 (maxpool), -3 (c1); upsample
    o = _naive_conv(r, layers["c2"][0], np.full(14, 0.5), 1, 0, 1)  # 1x1 conv, pad=1 means size // 2 = 0
    (rows,) = net.forward(x)
    assert rows.shape == (8 * 8 * 2, 7)
    t = o.reshape(2, 7, 8, 8)
    sig = 1 / (1 + np.exp(-t))
    y, xx, anchor = 3, 5, 1  # row order: cell (row-major), then anchor
    got = rows[(y * 8 + xx) * 2 + anchor]
    np.testing.assert_allclose(got[0], (sig[anchor, 0, y, xx] + xx) / 8, atol=1e-5)
    np.testing.assert_allclose(got[1], (sig[anchor, 1, y, xx] + y) / 8, atol=1e-5)
    np.testing.assert_allclose(got[2], np.exp(t[anchor, 2, y, xx]) * 4 / 8, rtol=1e-4)
    np.testing.assert_allclose(got[3], np.exp(t[anchor, 3, y, xx]) * 5 / 8, rtol=1e-4)
    np.testing.assert_allclose(got[4:], sig[anchor, 4:, y, xx], atol=1e-5)


def test_darknet_weights_that_do_not_match_the_cfg_are_a_clear_error(tmp_path):
    from perception.teachers.darknet import DarknetNet

    cfg, weights, _ = _tiny_darknet(tmp_path, extra_values=3)
    with pytest.raises(ModelError, match="left after the last layer"):
        DarknetNet(cfg, weights)
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ModelError, match="ends inside layer"):
        DarknetNet(cfg, weights)
    with pytest.raises(ModelError, match="not found"):
        DarknetNet(cfg, tmp_path / "missing.weights")
    cfg.write_text(TINY_CFG.replace("[dropout]", "[reorg]"))
    with pytest.raises(ModelError, match=r"\[reorg\] is not supported"):
        DarknetNet(cfg, weights)


def test_missing_teacher_weights_name_the_file(tmp_path):
    from perception.teachers.detectors import build_teacher, weight_path

    with pytest.raises(ModelError, match="yolox_nano_coco_416.onnx: teacher weights not found"):
        weight_path("yolox_nano_coco_416.onnx", tmp_path)
    with pytest.raises(ModelError, match="teacher weights not found"):
        build_teacher("yolofastest", weights_dir=tmp_path)
    bad = tmp_path / "yolox_nano_coco_416.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="cannot load teacher model"):
        build_teacher("yolox", weights_dir=tmp_path)


def test_teachers_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import perception.teachers.label, perception.teachers.lanes, perception.eval.predictors\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_teacher_names_list_the_valid_ones():
    from perception.errors import ConfigError
    from perception.eval.predictors import build_predictor
    from perception.teachers.detectors import build_teacher

    with pytest.raises(ConfigError, match="valid: yolox, picodet, yolofastest"):
        build_teacher("yolov9")
    with pytest.raises(ConfigError, match="teacher:ensemble"):
        build_predictor("teacher:yolov9")


# -- the adapters on real frames ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def highway():
    require_weights()
    return cv2.imread(str(HIGHWAY / "test1.jpg"))


@pytest.mark.parametrize("name", ["yolox", "picodet", "yolofastest"])
def test_each_teacher_finds_the_cars_of_a_real_frame(name, highway):
    from perception.teachers.detectors import build_teacher

    teacher = build_teacher(name, threads=1)
    h, w = highway.shape[:2]
    coco = teacher.detect_coco(highway)
    assert coco.labels.dtype == np.int64 and ((coco.labels >= 0) & (coco.labels < 80)).all()
    pred = teacher.predict(highway)
    cars = pred.boxes[(pred.labels == 0) & (pred.scores >= 0.5)]
    assert len(cars) >= 1, (name, pred.scores, pred.labels)
    assert (pred.boxes[:, [0, 1]] >= 0).all() and (pred.boxes[:, 2] <= w).all() and (pred.boxes[:, 3] <= h).all()
    assert (pred.boxes[:, 2] > pred.boxes[:, 0]).all() and (pred.boxes[:, 3] > pred.boxes[:, 1]).all()
    # the two cars of this frame: a white one at x 810..950 and a dark one at x 1050..1270, y 400..510
    from perception.postprocess.nms import box_iou

    truth = np.array([[812, 405, 945, 495], [1050, 402, 1272, 510]], np.float32)
    assert (box_iou(truth, cars).max(1) > 0.7).all(), cars


def test_tta_and_the_ensemble_on_a_real_frame(highway):
    from perception.teachers.detectors import build_teacher
    from perception.teachers.ensemble import TeacherEnsemble

    plain = build_teacher("yolox", threads=1, score_threshold=0.3)
    tta = build_teacher("yolox", threads=1, score_threshold=0.3, tta=True)
    assert tta.name == "yolox+tta"
    cars = tta.predict(highway)
    assert ((cars.labels == 0) & (cars.scores >= 0.5)).sum() >= 2
    ens = TeacherEnsemble([plain, build_teacher("picodet", threads=1, score_threshold=0.3)])
    result = ens.run(highway)
    best = int(np.argmax(result.fused.scores))
    assert result.fused.labels[best] == 0 and result.agreeing(best) == ["yolox", "picodet"]


def test_twinlitenetplus_finds_road_and_lane_lines(highway):
    from perception.teachers.lanes import TwinLiteNetPlus

    drivable, lane = TwinLiteNetPlus(threads=1).masks(highway)
    h, w = highway.shape[:2]
    assert drivable.shape == lane.shape == (h, w)
    assert drivable[int(h * 0.9), w // 2] and not drivable[h // 4, w // 2]  # road below, sky above
    assert 0.002 < lane.mean() < 0.1


# -- labelling rules ----------------------------------------------------------------------------------


def _labels(boxes, labels, ignore=None, scores=None, source="teacher"):
    from perception.teachers.label import BoxLabels

    n = len(labels)
    return BoxLabels(
        arr(*boxes),
        np.array(labels, np.int64),
        np.zeros(n, bool) if ignore is None else np.array(ignore),
        np.full(n, 0.9, np.float32) if scores is None else np.array(scores, np.float32),
        (("yolox", "picodet"),) * n,
        (source,) * n,
    )


def test_camvid_box_modes_on_a_row_of_parked_cars():
    from perception.teachers.label import merge_component_boxes

    comp = _labels([[0, 0, 100, 40], [200, 0, 210, 10], [300, 0, 340, 30]], [0, 3, 0], source="component")
    teacher = _labels(
        [[0, 0, 48, 40], [52, 0, 100, 40], [20, 0, 40, 40], [500, 500, 520, 520], [300, 0, 340, 30], [196, 0, 206, 10]],
        [0, 0, 0, 0, 0, 3],
        ignore=[False, False, True, False, False, False],
    )
    same = merge_component_boxes(comp, teacher, "component")
    assert same is comp
    split = merge_component_boxes(comp, teacher, "teacher")
    # the row becomes its two cars (the ignore box is not used); the sign (one teacher box, 60 % inside) and
    # the single car stay as components; the teacher car outside every component is not added
    np.testing.assert_array_equal(
        split.boxes, arr([0, 0, 48, 40], [52, 0, 100, 40], [200, 0, 210, 10], [300, 0, 340, 30])
    )
    assert split.sources == ("teacher", "teacher", "component", "component")
    assert split.labels.tolist() == [0, 0, 3, 0]
    both = merge_component_boxes(comp, teacher, "both")
    np.testing.assert_array_equal(both.boxes[:3], arr([0, 0, 100, 40], [0, 0, 48, 40], [52, 0, 100, 40]))
    assert both.sources == ("component", "teacher", "teacher", "component", "component")
    # a teacher box only 60 % inside does not count: the row then has one instance and stays whole
    partial = _labels([[0, 0, 48, 40], [80, 0, 130, 40]], [0, 0])  # second: 20 of 50 px wide inside
    assert merge_component_boxes(comp, partial, "teacher").sources == ("component",) * 3
    # a teacher box of another class does not split a component
    peds = _labels([[0, 0, 48, 40], [52, 0, 100, 40]], [1, 1])
    assert merge_component_boxes(comp, peds, "teacher").sources == ("component",) * 3


class _FakeEnsemble:
    """Stands in for TeacherEnsemble: fixed fused boxes, no weights needed."""

    names = ("yolox", "picodet", "yolofastest")
    iou_thr = 0.55
    skip_box_thr = 0.05

    def __init__(self, boxes, scores, labels, models):
        from perception.teachers.box_fusion import FusedBoxes

        n = len(scores)
        self.fused = FusedBoxes(arr(*boxes), np.array(scores, np.float32), np.array(labels, np.int64),
                                np.array(models, bool).reshape(n, 3), np.ones(n, np.int64))  # fmt: skip
        self.calls = 0

    def run(self, image):
        from perception.teachers.ensemble import EnsembleResult

        self.calls += 1
        return EnsembleResult(self.fused, (), self.names)


class _FakeLanes:
    name = "fake-lanes"

    def masks(self, image):
        h, w = image.shape[:2]
        drivable = np.zeros((h, w), bool)
        drivable[h // 2 :] = True
        lane = np.zeros((h, w), bool)
        lane[:, w // 2] = True  # a vertical line over sky and road
        return drivable, lane


def test_labeller_thresholds_meta_and_lanes_on_a_frame_without_labels():
    from perception.teachers.label import FrameItem, Labeller

    ens = _FakeEnsemble(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
        [0.8, 0.3, 0.1],
        [0, 1, 0],
        [[1, 1, 1], [0, 1, 0], [1, 0, 0]],
    )
    image = np.zeros((60, 80, 3), np.uint8)
    sample = Labeller(ens, 0.5, 0.2, lanes=_FakeLanes()).label(FrameItem("f/000001", image))
    np.testing.assert_array_equal(sample.boxes, arr([0, 0, 10, 10], [20, 20, 30, 30]))
    assert sample.ignore.tolist() == [False, True] and sample.labels.tolist() == [0, 1]
    meta = sample.meta["box_labels"]
    assert [m["teachers"] for m in meta] == [["yolox", "picodet", "yolofastest"], ["picodet"]]
    assert [m["score"] for m in meta] == pytest.approx([0.8, 0.3]) and [m["ignore"] for m in meta] == [False, True]
    assert sample.meta["teacher_labels"]["thresholds"]["positive"] == 0.5
    assert sample.lane_labelled and set(np.unique(sample.seg)) == {0, 1, 2}
    assert sample.seg[10, 40] == 2 and sample.seg[10, 10] == 0 and sample.seg[50, 10] == 1


def test_labeller_on_a_camvid_style_sample_keeps_its_mask_and_components():
    from perception.data.camvid import COMPONENT_BOXES
    from perception.data.sample import Sample
    from perception.teachers.label import FrameItem, Labeller

    image = np.zeros((60, 80, 3), np.uint8)
    seg = np.zeros((60, 80), np.uint8)
    seg[30:] = 1  # road in the lower half
    seg[55:, :5] = 255
    src = Sample(image, "train/0001", seg, False, arr([0, 30, 40, 50]), np.array([0]), np.array([False]),
                 {"boxes_from": COMPONENT_BOXES})  # fmt: skip
    ens = _FakeEnsemble([[0, 30, 19, 50], [21, 30, 40, 50]], [0.9, 0.8], [0, 0], [[1, 1, 1], [1, 1, 0]])
    comp = Labeller(ens, 0.5, 0.2, lanes=_FakeLanes(), camvid_boxes="component").label(FrameItem(src.name, image, src))
    assert ens.calls == 0  # component boxes only: the teachers are not run
    np.testing.assert_array_equal(comp.boxes, src.boxes)
    assert comp.meta["box_labels"] == [{"score": None, "teachers": [], "source": "component", "ignore": False}]
    # lanes: only the lane pixels on the source's road become lane; the ignore pixels and sky stay
    assert comp.lane_labelled and comp.seg[40, 40] == 2 and comp.seg[10, 40] == 0 and comp.seg[57, 2] == 255
    assert (comp.seg[30:, 41] == 1).all() and src.seg[40, 40] == 1  # the source mask is not modified
    split = Labeller(ens, 0.5, 0.2, camvid_boxes="teacher").label(FrameItem(src.name, image, src))
    assert ens.calls == 1 and len(split.boxes) == 2 and split.meta["teacher_labels"]["camvid_boxes"] == "teacher"
    assert [m["source"] for m in split.meta["box_labels"]] == ["teacher", "teacher"]
    assert split.seg is src.seg and not split.lane_labelled  # no lanes asked: the mask as it was


# -- `perception label` and `perception eval --model teacher:...` end to end --------------------------


def test_label_command_end_to_end_on_three_images(tmp_path, capsys):
    require_weights()
    from perception.cli import main
    from perception.data.registry import build_dataset

    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("test1.jpg", "test4.jpg", "straight_lines1.jpg"):
        cv2.imwrite(str(folder / name), cv2.imread(str(HIGHWAY / name)))
    out = tmp_path / "labelled"
    code = main(["label", "--data", f"images:{folder}", "--out", str(out), "--lanes", "twinlitenetplus",
                 "--split", "val", "--threads", "1", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "labelled 3 frames" in capsys.readouterr().out
    ds = build_dataset("synthetic", out, split="val")
    assert sorted(ds.names) == ["straight_lines1", "test1", "test4"]
    total_cars = 0
    for sample in ds:
        assert sample.lane_labelled and sample.seg.shape == sample.image.shape[:2]
        assert set(np.unique(sample.seg)) <= {0, 1, 2} and (sample.seg == 2).any()
        meta = sample.meta["box_labels"]
        assert len(meta) == len(sample.boxes)
        for m, ign in zip(meta, sample.ignore.tolist(), strict=True):
            assert m["ignore"] == ign and m["source"] == "teacher" and m["teachers"]
            assert m["score"] >= (0.15 if ign else 0.4)
        total_cars += int(((sample.labels == 0) & ~sample.ignore).sum())
    assert total_cars >= 2
    assert "yolox" in ds.info["description"] and "Apache-2.0" in ds.info["description"]


def test_label_command_refuses_unknown_teachers_and_misplaced_options(tmp_path, capsys):
    from perception.cli import main

    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    code = main(
        ["label", "--teachers", "yolox,detr", "--data", f"images:{tmp_path / 'in'}", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code != 0 and "detr" in err and "valid: yolox, picodet, yolofastest" in err and "Traceback" not in err
    code = main(
        ["label", "--data", f"images:{tmp_path / 'in'}", "--camvid-boxes", "teacher", "--out", str(tmp_path / "o")]
    )
    assert code != 0 and "--camvid-boxes is for camvid" in capsys.readouterr().err
    code = main(["label", "--data", f"images:{tmp_path / 'in'}", "--lanes", "yolop", "--out", str(tmp_path / "o")])
    assert code != 0 and "valid: twinlitenetplus" in capsys.readouterr().err
    code = main(["label", "--data", f"images:{tmp_path / 'in'}", "--lane-autolabel", "--out", str(tmp_path / "o")])
    assert code != 0 and "--lane-autolabel is for camvid data" in capsys.readouterr().err


def test_label_command_on_a_video_every_kth_frame(tmp_path, capsys):
    require_weights()
    from conftest import write_video

    from perception.cli import main
    from perception.data.folder import FolderDataset

    video = write_video(tmp_path / "clip.mp4", n=9)
    out = tmp_path / "o"
    code = main(["label", "--teachers", "picodet", "--data", f"video:{video}", "--every", "4", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    ds = FolderDataset(out, "train")
    assert ds.names == ["clip/000000", "clip/000004", "clip/000008"]
    assert all(s.boxes is not None and s.seg is None for s in ds)


def test_teacher_eval_adapter(highway):
    from perception.eval.predictors import build_predictor

    p = build_predictor("teacher:picodet", threads=1)
    assert p.det_classes == ("car", "pedestrian", "cyclist", "traffic_sign") and p.seg_classes == ()
    out = p.predict(highway)
    assert out.seg is None and len(out.boxes) == len(out.scores) == len(out.labels)
    assert (np.diff(out.scores) <= 0).all() and out.scores.min() >= 0.001
    ens = build_predictor("teacher:ensemble", threads=1)
    assert ens.names == ("yolox", "picodet", "yolofastest") and ens.seg_classes == ()
