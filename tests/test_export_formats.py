"""Whole-frame export (letterbox + box mapping in the graph) and the `perception export` formats.

Tiny networks at 64x96 keep every export under a second. Their class heads are tuned on the test frames
so that about 2 % of (cell, class) pairs pass the score threshold: the NMS and the box mapping to frame
pixels then run on a few dozen detections per frame set instead of none (random weights) or a wall of
near-ties (a high class prior).

The frames are made of flat 8x8 blocks. ONNX Resize and cv2.resize agree exactly inside flat regions and
within one grey level at edges; at scale 0.5 (128x128 frames) with blocks aligned to even pixels they agree
exactly, so there the class head may be steep (confident scores) without the 1e-3 score tolerance of the
parity check depending on the resize rounding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import write_video

from perception.camera_model import CameraModel
from perception.cli import main
from perception.config import PipelineConfig, PreprocessConfig
from perception.errors import ConfigError, ModelError
from perception.export.checkpoint_export import PARITY, check_frames_from, check_parity
from perception.export.onnx_export import export_onnx
from perception.export.random_model import random_net_and_contract
from perception.frames import Frame
from perception.nets.checkpoints import save_model_checkpoint
from perception.nets.contract_graph import InputAdapter
from perception.pipeline import Pipeline, build_pipeline
from perception.postprocess.network_outputs import DetectionSettings
from perception.postprocess.nms import box_iou
from perception.preprocess import Preprocessor, letterbox_geometry
from perception.runtime.contract import ModelContract
from perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from perception.runtime.tensorrt_backend import tensorrt_available

SIZE = (64, 96)  # network input (H, W)
CPU = ("CPUExecutionProvider",)
LOGIT_AT_THRESHOLD = math.log(0.25 / 0.75)  # the contracts' score threshold 0.25


def block_frames(size_hw: tuple[int, int], n: int = 4, block: int = 8, seed: int = 0) -> list[np.ndarray]:
    """BGR frames of random flat ``block`` x ``block`` squares (aligned to multiples of ``block``)."""
    rng = np.random.default_rng(seed)
    h, w = size_hw
    frames = []
    for _ in range(n):
        small = rng.integers(0, 256, (-(-h // block), -(-w // block), 3), dtype=np.uint8)
        frames.append(np.ascontiguousarray(np.repeat(np.repeat(small, block, 0), block, 1)[:h, :w]))
    return frames


def confident_net(
    calib: list[np.ndarray], *, format: str = "fused", gain: float = 8.0, keep: float = 0.02, seed: int = 1
) -> tuple[torch.nn.Module, ModelContract, dict]:
    """Tiny net whose class logits are ``gain`` times steeper than at init and shifted so that about the top
    ``keep`` of (cell, class) pairs of each stride and class pass the 0.25 threshold on ``calib`` (frames at
    any size, letterboxed to SIZE here); seg logits centred per class so all three classes appear.

    The threshold is put in the middle of the widest gap between neighbouring logits near that quantile,
    so no candidate on ``calib`` sits at the threshold where a one-grey-level resize difference (in-graph
    letterbox vs OpenCV) would add or drop a box."""
    net, contract, kwargs = random_net_and_contract(input_size=SIZE, seed=seed, format=format)
    pre = Preprocessor(SIZE)
    x = InputAdapter(contract.color)(torch.from_numpy(np.stack([pre(f)[0] for f in calib])))
    with torch.no_grad():
        for head in net.cls_heads:
            head.weight.mul_(gain)
        out = net(x)
        for head, logits in zip(net.cls_heads, out.cls_maps, strict=True):
            for c, values in enumerate(logits.transpose(0, 1).flatten(1)):
                v = values.sort().values
                lo = min(int(len(v) * (1 - 2 * keep)), len(v) - 2)
                hi = max(lo + 1, min(int(len(v) * (1 - keep / 2)), len(v) - 1))
                j = lo + int((v[lo + 1 : hi + 1] - v[lo:hi]).argmax())
                head.bias[c] += LOGIT_AT_THRESHOLD - float(v[j] + v[j + 1]) / 2
        net.seg_out.bias -= out.seg_logits.mean((0, 2, 3))
    return net, contract, kwargs


def whole_frame(contract: ModelContract, frame_hw: tuple[int, int]) -> ModelContract:
    return replace(contract, frame_size=frame_hw, version=2)


@dataclass
class Case:
    frame_hw: tuple[int, int]
    net: torch.nn.Module
    contract: ModelContract  # whole-frame contract
    whole: Path  # whole-frame fused export
    host: Path  # the same weights exported without frame_size (host letterboxing)
    frames: list[np.ndarray]


# frame (H, W) -> class-head gain. 100x150: scale 0.64, no padding. 120x120: scale 8/15, 16 px padding left
# and right. 128x128: scale 0.5, 16 px padding, exact resize (steep head, confident scores).
GEOMETRIES = {(100, 150): 8.0, (120, 120): 8.0, (128, 128): 48.0}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[tuple[int, int], Case]:
    root = tmp_path_factory.mktemp("whole_frame")
    out = {}
    for (fh, fw), gain in GEOMETRIES.items():
        frames = block_frames((fh, fw), n=4)
        net, contract, _ = confident_net(frames, gain=gain)
        wf = whole_frame(contract, (fh, fw))
        whole = export_onnx(net, wf, root / f"whole_{fh}x{fw}.onnx")
        host = export_onnx(net, contract, root / f"host_{fh}x{fw}.onnx")
        out[(fh, fw)] = Case((fh, fw), net, wf, whole, host, frames)
    return out


def _io(values) -> list[tuple[str, int, list]]:
    return [
        (v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
        for v in values
    ]


# --- the contract ------------------------------------------------------------------------------------------
def test_whole_frame_contract_round_trips_as_version_2():
    net_contract = random_net_and_contract(input_size=SIZE)[1]
    contract = whole_frame(net_contract, (100, 150))
    d = json.loads(contract.to_json())
    assert d["version"] == 2
    assert d["input"]["size"] == [64, 96] and d["input"]["frame_size"] == [100, 150]
    assert d["input"]["letterbox"]["in_graph"] is True
    assert "frame pixels" in d["outputs"]["dets"]
    back = ModelContract.from_json(contract.to_json())
    assert back == contract and back.frame_size == (100, 150) and back.version == 2
    assert back.graph_input_size == (100, 150)
    assert back.expected_inputs() == [("images", "uint8", ("N", 100, 150, 3))]
    assert ("seg", "uint8", ("N", 64, 96)) in back.expected_outputs(), "seg stays at the network input size"
    # Without frame_size nothing changes: the graph takes the network input, boxes in input pixels.
    plain = ModelContract.from_json(net_contract.to_json())
    assert plain.frame_size is None and plain.graph_input_size == (64, 96)
    assert plain.expected_inputs() == [("images", "uint8", ("N", 64, 96, 3))]
    assert "frame_size" not in json.loads(net_contract.to_json())["input"]
    assert "input pixels" in plain.output_meanings()["dets"]


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"format": "raw"}, "must be format 'fused'"),
        ({"version": 1}, "needs contract version >= 2, got 1"),
        ({"frame_size": (0, 150)}, "frame size 0x150 must be positive"),
        ({"version": 3}, "contract version 3 is newer than this runtime"),
    ],
)
def test_whole_frame_contract_refuses_what_it_cannot_describe(change, needle):
    base = random_net_and_contract(input_size=SIZE)[1]
    with pytest.raises(ValueError, match=needle):
        replace(base, **{"frame_size": (100, 150), "version": 2, **change})


def test_whole_frame_contract_json_with_raw_format_is_a_model_error():
    d = whole_frame(random_net_and_contract(input_size=SIZE)[1], (100, 150)).to_dict()
    d["format"] = "raw"
    with pytest.raises(ModelError, match=r"m\.onnx: invalid 'perception.contract' contract: .*must be format 'fused'"):
        ModelContract.from_json(json.dumps(d), "m.onnx")


def test_passthrough_preprocessor_hands_over_the_frame_itself():
    frame = block_frames((100, 150), n=1)[0]
    out, lb = Preprocessor((100, 150))(frame)
    assert np.shares_memory(out, frame) and (out == frame).all()
    assert (lb.scale, lb.pad_x, lb.pad_y, lb.frame_size) == (1.0, 0, 0, (100, 150))
    # RGB models still get their colour swap (no passthrough).
    rgb, _ = Preprocessor((100, 150), color="RGB")(frame)
    assert not np.shares_memory(rgb, frame) and (rgb == frame[..., ::-1]).all()


# --- the exported graph ------------------------------------------------------------------------------------
@pytest.mark.parametrize("frame_hw", list(GEOMETRIES))
def test_whole_frame_export_takes_uint8_frames(cases, frame_hw):
    case = cases[frame_hw]
    model = onnx.load(str(case.whole))
    fh, fw = frame_hw
    assert _io(model.graph.input) == [("images", onnx.TensorProto.UINT8, ["N", fh, fw, 3])]
    outputs = dict((n, (t, s)) for n, t, s in _io(model.graph.output))
    assert outputs["seg"] == (onnx.TensorProto.UINT8, ["N", 64, 96])
    assert outputs["dets"][1][1:] == [case.contract.max_dets, 6]
    backend = OnnxRuntimeBackend(case.whole, providers=CPU)  # checks the real I/O against the contract
    assert backend.contract.frame_size == frame_hw and backend.contract.version == 2
    assert backend.contract.extra["normalize"]["mean"] == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("frame_hw", list(GEOMETRIES))
def test_in_graph_letterbox_is_the_host_letterbox(cases, frame_hw, tmp_path):
    """Cut the graph after Resize + Pad: float pixels within one grey level of OpenCV's uint8 letterbox,
    padding bands exact."""
    case = cases[frame_hw]
    cut = tmp_path / "letterbox.onnx"
    onnx.utils.extract_model(str(case.whole), str(cut), ["images"], ["letterboxed"])
    frames = case.frames + block_frames(frame_hw, n=2, block=1, seed=5)  # also per-pixel noise
    ours = ort.InferenceSession(str(cut), providers=list(CPU)).run(None, {"images": np.stack(frames)})[0]
    pre = Preprocessor(SIZE)
    host = np.stack([pre(f)[0] for f in frames])
    assert ours.dtype == np.float32 and ours.shape == host.shape == (len(frames), *SIZE, 3)
    assert np.abs(ours - host.astype(np.float32)).max() <= 1.0
    lb = letterbox_geometry(frame_hw, SIZE)
    ch, cw = lb.content_hw
    content = np.zeros(SIZE, bool)
    content[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw] = True
    assert (ours[:, ~content] == case.contract.pad_value).all()
    if frame_hw == (128, 128):  # scale 0.5 on 2x2-constant blocks: bit-exact
        assert lb.pad_x == 16 and (ours[: len(case.frames)] == host[: len(case.frames)]).all()


@pytest.mark.parametrize("frame_hw", list(GEOMETRIES))
def test_whole_frame_pipeline_passes_parity_with_eager_net(cases, frame_hw):
    case = cases[frame_hw]
    report = check_parity(case.whole, case.net, case.contract, case.frames)
    assert report.ok, str(report)
    assert report.dets_onnx >= 10, "the check must compare detections"
    if frame_hw == (128, 128):
        assert report.worst_score_diff < 1e-4 and report.worst_iou > 0.999


def _rows(out: dict, i: int) -> np.ndarray:
    return out["dets"][i, : int(out["num_dets"][i])]


def _match(a: np.ndarray, b: np.ndarray) -> tuple[int, float, float]:
    """Greedy one-to-one match of dets rows (same class, best IoU first): (matched, worst IoU, worst score diff)."""
    if not len(a) or not len(b):
        return 0, 1.0, 0.0
    iou = box_iou(a[:, :4], b[:, :4])
    iou[a[:, 5][:, None] != b[:, 5][None, :]] = 0
    used: set[int] = set()
    matched, worst_iou, worst_diff = 0, 1.0, 0.0
    for r in np.argsort(-a[:, 4]):
        free = [c for c in np.argsort(-iou[r]) if c not in used]
        if free and iou[r, free[0]] >= PARITY["box_iou"]:
            used.add(free[0])
            matched += 1
            worst_iou = min(worst_iou, float(iou[r, free[0]]))
            worst_diff = max(worst_diff, abs(float(a[r, 4] - b[free[0], 4])))
    return matched, worst_iou, worst_diff


@pytest.mark.parametrize("frame_hw", list(GEOMETRIES))
def test_whole_frame_dets_are_host_dets_mapped_to_frame_pixels(cases, frame_hw):
    """Same weights, two exports: the whole-frame graph's dets equal the plain fused model's dets (run on
    host-letterboxed frames) mapped with Letterbox.boxes_to_frame, one to one."""
    case = cases[frame_hw]
    fh, fw = frame_hw
    whole = OnnxRuntimeBackend(case.whole, providers=CPU).infer(np.stack(case.frames))
    pre = Preprocessor(SIZE)
    inputs = [pre(f) for f in case.frames]
    host = OnnxRuntimeBackend(case.host, providers=CPU).infer(np.stack([x for x, _ in inputs]))
    total = clipped = 0
    for i, (_, lb) in enumerate(inputs):
        a, b = _rows(whole, i), _rows(host, i).copy()
        unclipped = (b[:, :4] - [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]) / lb.scale
        b[:, :4] = lb.boxes_to_frame(b[:, :4])
        assert len(a) == len(b), f"frame {i}: {len(a)} whole-frame dets, {len(b)} host dets"
        matched, worst_iou, worst_diff = _match(a, b)
        assert matched == len(a), f"frame {i}: matched {matched} of {len(a)}"
        assert worst_iou >= PARITY["box_iou"] and worst_diff <= PARITY["score_diff"]
        assert (a[:, [0, 2]] >= 0).all() and (a[:, [0, 2]] <= fw).all()
        assert (a[:, [1, 3]] >= 0).all() and (a[:, [1, 3]] <= fh).all()
        total += len(a)
        clipped += int(((unclipped[:, :2] < 0) | (unclipped[:, 2:] > [fw, fh])).any(1).sum())
    assert total >= 10
    assert clipped > 0, "some boxes must reach outside the frame, so the clipping is exercised"
    if frame_hw == (128, 128):
        assert max(float(_rows(whole, i)[:, 4].max()) for i in range(len(case.frames))) > 0.6, "confident boxes"


@pytest.fixture(scope="module")
def top_left(cases, tmp_path_factory) -> Case:
    """The 128x128 case exported with ``align: top-left`` (the 32 px of padding all on the right)."""
    base = cases[(128, 128)]
    root = tmp_path_factory.mktemp("top_left")
    contract = replace(base.contract, align="top-left")
    whole = export_onnx(base.net, contract, root / "whole.onnx")
    host = export_onnx(base.net, replace(contract, frame_size=None, version=1), root / "host.onnx")
    return Case(base.frame_hw, base.net, contract, whole, host, base.frames)


def test_top_left_whole_frame_export_places_the_frame_top_left(top_left, tmp_path):
    cut = tmp_path / "letterbox.onnx"
    onnx.utils.extract_model(str(top_left.whole), str(cut), ["images"], ["letterboxed"])
    ours = ort.InferenceSession(str(cut), providers=list(CPU)).run(None, {"images": np.stack(top_left.frames)})[0]
    pre = Preprocessor(SIZE, align="top-left")
    assert (ours == np.stack([pre(f)[0] for f in top_left.frames])).all()
    assert (ours[:, :, 64:] == 114).all() and not (ours[:, :, :64] == 114).all()
    whole = OnnxRuntimeBackend(top_left.whole, providers=CPU).infer(np.stack(top_left.frames))
    inputs = [pre(f) for f in top_left.frames]
    host = OnnxRuntimeBackend(top_left.host, providers=CPU).infer(np.stack([x for x, _ in inputs]))
    for i, (_, lb) in enumerate(inputs):
        assert (lb.pad_x, lb.pad_y) == (0, 0)
        a, b = _rows(whole, i), _rows(host, i).copy()
        b[:, :4] = lb.boxes_to_frame(b[:, :4])
        assert len(a) == len(b) > 0 and _match(a, b)[0] == len(a)


def test_check_parity_letterboxes_the_reference_with_the_contract_align(top_left):
    report = check_parity(top_left.whole, top_left.net, top_left.contract, top_left.frames)
    assert report.ok, str(report)


def test_pipeline_results_of_a_whole_frame_model(cases):
    """FrameResult: boxes in frame pixels, seg at the network size with the graph's letterbox (padding
    excluded from seg_area)."""
    from perception.sinks import scene_to_json

    case = cases[(120, 120)]
    pipe = build_pipeline(PipelineConfig(model=str(case.whole)))
    ref = build_pipeline(PipelineConfig(model=str(case.host)))
    lb = letterbox_geometry((120, 120), SIZE)
    assert pipe.graph_letterbox == lb
    for i, image in enumerate(case.frames):
        frame = Frame(i, i / 10, image, "cam")
        a, b = pipe(frame), ref(frame)
        assert a.letterbox == lb and a.seg.class_ids.shape == SIZE
        assert (a.seg.class_ids == b.seg.class_ids).mean() >= PARITY["seg_agreement"]
        assert len(a.detections) == len(b.detections)
        if len(a.detections):
            iou = box_iou(np.asarray(a.detections.boxes_xyxy), np.asarray(b.detections.boxes_xyxy))
            assert (iou.max(1) >= PARITY["box_iou"]).all()
        line, want = scene_to_json(a), scene_to_json(b)
        assert line["size"] == [120, 120]
        for name, value in want["seg_area"].items():
            assert line["seg_area"][name] == pytest.approx(value, abs=0.01)


# --- refusals ------------------------------------------------------------------------------------------------
def test_frame_of_another_size_is_a_config_error_naming_source_and_sizes(cases):
    pipe = build_pipeline(PipelineConfig(model=str(cases[(100, 150)].whole)))
    odd = Frame(0, 0.0, block_frames((108, 192), n=1)[0], "cams/front.mp4")
    with pytest.raises(ConfigError) as err:
        pipe(odd)
    msg = str(err.value)
    assert "cams/front.mp4" in msg and "frame is 192x108" in msg and "whole 150x100 frames" in msg
    assert "--frame-size 192x108" in msg
    good = Frame(1, 0.1, cases[(100, 150)].frames[0], "cams/front.mp4")
    with pytest.raises(ConfigError, match="frame is 192x108"):  # one odd frame in a batch refuses the batch
        pipe.process_batch([good, odd])


def test_roi_and_undistortion_are_refused_with_a_whole_frame_model(cases):
    path = cases[(100, 150)].whole
    with pytest.raises(ConfigError, match="undistortion and --roi need a model exported without --frame-size"):
        build_pipeline(PipelineConfig(model=str(path), preprocess=PreprocessConfig(roi=(0, 0, 100, 80))))
    backend = OnnxRuntimeBackend(path, providers=CPU)
    camera = CameraModel(
        image_size=(150, 100),
        camera_matrix=((120.0, 0, 75.0), (0, 120.0, 50.0), (0, 0, 1)),
        dist_coeffs=(-0.2, 0, 0, 0),
    )
    pre = Preprocessor((100, 150), camera=camera, undistort=True)
    with pytest.raises(ConfigError, match=r"letterboxes whole 150x100 frames"):
        Pipeline(backend, pre, DetectionSettings.from_contract(backend.contract))


def test_dynamic_batch_of_three_frames_and_zero_padding_rows(cases):
    case = cases[(120, 120)]
    backend = OnnxRuntimeBackend(case.whole, providers=CPU)
    frames = case.frames[:3]
    out = backend.infer(np.stack(frames))
    k = case.contract.max_dets
    assert out["dets"].shape == (3, k, 6) and out["num_dets"].shape == (3,) and out["seg"].shape == (3, *SIZE)
    assert out["num_dets"].dtype == np.int32 and (out["num_dets"] > 0).all() and (out["num_dets"] < k).all()
    for i, frame in enumerate(frames):
        n = int(out["num_dets"][i])
        assert not out["dets"][i, n:].any(), f"image {i}: rows past num_dets must be zero"
        single = backend.infer(frame[None])
        assert int(single["num_dets"][0]) == n
        np.testing.assert_allclose(out["dets"][i, :n], single["dets"][0, :n], atol=1e-3)
        assert (out["seg"][i] == single["seg"][0]).mean() >= PARITY["seg_agreement"]
    results = build_pipeline(PipelineConfig(model=str(case.whole))).process_batch(
        [Frame(i, i / 10, f, "cam") for i, f in enumerate(frames)]
    )
    assert [r.frame_index for r in results] == [0, 1, 2]
    assert [len(r.detections) for r in results] == [int(n) for n in out["num_dets"]]


def test_whole_frame_model_through_the_runner_with_batches(cases, tmp_path):
    """A video of the export's frame size, batch 3 over 7 frames (a partial last batch)."""
    from perception.runner import run_source
    from perception.sources import VideoFileSource

    case = cases[(100, 150)]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (150, 100))
    for i in range(7):
        writer.write(case.frames[i % len(case.frames)])
    writer.release()
    pipe = build_pipeline(PipelineConfig(model=str(case.whole)))
    summary = run_source(VideoFileSource(video), pipe, tmp_path / "out", progress=False, batch_size=3)
    assert summary.ok and summary.frames_processed == 7
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(7))
    assert sum(len(r["detections"]) for r in lines) > 0
    for d in (d for r in lines for d in r["detections"]):
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 150 and 0 <= y1 <= y2 <= 100


# --- `perception export` ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A raw-format checkpoint (as the training engine writes them) of a tiny net with some detections on
    64x96 noise (the default check frames) and on 150x100 block frames."""
    root = tmp_path_factory.mktemp("ckpt")
    calib = check_frames_from(None, SIZE) + block_frames((100, 150), n=4, seed=2)  # the frames checked below
    net, contract, kwargs = confident_net(calib, format="raw")
    assert contract.format == "raw" and contract.frame_size is None
    return save_model_checkpoint(root / "tiny.pt", net, contract, "tiny", kwargs)


@pytest.fixture(scope="module")
def check_dir(tmp_path_factory) -> Path:
    """150x100 images for the whole-frame export's parity check."""
    folder = tmp_path_factory.mktemp("check_frames")
    for i, image in enumerate(block_frames((100, 150), n=4, seed=2)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _parity_line(text: str) -> str:
    line = next(x for x in text.splitlines() if x.startswith("parity over"))
    return line


def test_export_onnx_raw_writes_a_host_decoded_model(capsys, checkpoint, tmp_path):
    out = tmp_path / "raw.onnx"
    code, text, err = _cli(capsys, "export", str(checkpoint), "--out", str(out), "--format", "onnx-raw")
    assert code == 0, err
    assert f"wrote {out}" in text and _parity_line(text).endswith("OK")
    backend = OnnxRuntimeBackend(out, providers=CPU)
    assert backend.contract.format == "raw" and backend.contract.frame_size is None
    names = {o.name for o in onnx.load(str(out)).graph.output}
    assert {"seg", "cls_s8", "box_s32"} <= names and "dets" not in names
    # detections were compared: "detections onnx N / torch N" with N > 0
    n = int(_parity_line(text).split("detections onnx ")[1].split(" ")[0])
    assert n > 0


def test_export_onnx_with_frame_size_writes_a_whole_frame_model(capsys, checkpoint, check_dir, tmp_path):
    out = tmp_path / "whole.onnx"
    code, text, err = _cli(
        capsys,
        "export",
        str(checkpoint),
        "--out",
        str(out),
        "--frame-size",
        "150x100",
        "--check-frames",
        str(check_dir),
    )
    assert code == 0, err
    assert "whole 150x100 frames letterboxed in the graph" in text and _parity_line(text).endswith("OK")
    assert int(_parity_line(text).split("detections onnx ")[1].split(" ")[0]) > 0
    model = onnx.load(str(out))
    assert _io(model.graph.input) == [("images", onnx.TensorProto.UINT8, ["N", 100, 150, 3])]
    contract = OnnxRuntimeBackend(out, providers=CPU).contract
    assert (contract.format, contract.frame_size, contract.version, contract.input_size) == (
        "fused",
        (100, 150),
        2,
        SIZE,
    )


def _export_int8(capsys, checkpoint, out, calib, *options) -> tuple[int, str, str]:
    return _cli(
        capsys, "export", str(checkpoint), "--out", str(out), "--format", "onnx-int8", "--calib", str(calib), *options
    )


def test_export_onnx_int8_writes_the_int8_file_and_its_agreement(capsys, checkpoint, tmp_path):
    video = write_video(tmp_path / "calib.mp4", n=10)
    out = tmp_path / "m-int8.onnx"
    # check frames of the video's size, not the network's: the agreement check letterboxes them
    code, text, err = _export_int8(capsys, checkpoint, out, video, "--calib-frames", "8", "--check-frames", str(video))
    assert code == 0, err
    assert out.is_file() and not list(tmp_path.glob("*fp32*")), "the FP32 step must not be left beside the output"
    assert f"wrote {out}" in text and "INT8 QDQ, entropy calibration on 8 frames" in text
    assert "against FP32 on the check frames" in text and "seg_agreement" in text and "matched" in text
    int8 = OnnxRuntimeBackend(out, providers=CPU)
    assert int8.contract.format == "fused" and int8.contract.extra["quantization"]["frames"] == 8
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)


def test_export_onnx_int8_keeps_the_named_modules_float(capsys, checkpoint, tmp_path):
    video = write_video(tmp_path / "calib.mp4", n=6)
    out = tmp_path / "m-int8.onnx"
    options = ("--calib-frames", "4", "--calib-method", "percentile", "--int8-float", "cls_heads")
    code, _, err = _export_int8(capsys, checkpoint, out, video, *options)
    assert code == 0, err
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    kept = [n for n in convs if n.name.startswith("/net/cls_heads.")]
    assert kept and len(kept) < len(convs)
    for conv in convs:
        quantized = conv.input[1] in producer and producer[conv.input[1]].op_type == "DequantizeLinear"
        assert quantized is (conv not in kept), conv.name
    record = OnnxRuntimeBackend(out, providers=CPU).contract.extra["quantization"]
    assert record["float_modules"] == ["cls_heads"] and record["method"] == "percentile"


def test_export_onnx_int8_refuses_a_float_module_the_network_lacks(capsys, checkpoint, tmp_path):
    code, _, err = _export_int8(
        capsys, checkpoint, tmp_path / "m.onnx", tmp_path, "--int8-float", "cls_heads,backbone.nope"
    )
    assert code == 1
    line = _one_error_line(err)
    assert f"--int8-float: backbone.nope name no module of {checkpoint}" in line
    assert not list(tmp_path.iterdir()), "nothing is written"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_export_onnx_int8_without_calib_is_refused(capsys, checkpoint, tmp_path):
    code, _, err = _cli(capsys, "export", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--format", "onnx-int8")
    assert code == 1
    assert "onnx-int8 needs calibration frames: --calib" in _one_error_line(err)
    assert not list(tmp_path.iterdir()), "nothing is written"


def test_export_onnx_raw_with_frame_size_is_refused(capsys, checkpoint, tmp_path):
    code, _, err = _cli(
        capsys,
        "export",
        str(checkpoint),
        "--out",
        str(tmp_path / "m.onnx"),
        "--format",
        "onnx-raw",
        "--frame-size",
        "150x100",
    )
    assert code == 1
    assert "--frame-size needs a fused format" in _one_error_line(err) and "onnx-raw" in err
    assert not list(tmp_path.iterdir())


TRT_OK, TRT_WHY = tensorrt_available()


@pytest.mark.skipif(TRT_OK, reason="tensorrt is available here")
def test_export_tensorrt_without_tensorrt_says_so(capsys, checkpoint, tmp_path):
    code, _, err = _cli(capsys, "export", str(checkpoint), "--out", str(tmp_path / "m.engine"), "--format", "tensorrt")
    assert code == 1
    line = _one_error_line(err)
    assert line == f"error: {TRT_WHY}" and ("tensorrt" in line or "cuda" in line)
    assert not (tmp_path / "m.engine").exists()
