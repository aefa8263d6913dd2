"""TensorRT path: the EfficientNMS-flavoured ONNX graph (CPU), clear errors without TensorRT, and engines (GPU).

The graph is checked on any machine: its plugin node and attributes, its declared outputs against the
fused contract, the part before the plugin (cut out and run by ONNX Runtime) against eager PyTorch, and
the ONNX ops after the plugin on synthetic plugin outputs. Building and running engines needs an NVIDIA
GPU with tensorrt 10 and cuda-python; those tests skip with the reason ``tensorrt_available`` gives.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perception.errors import ModelError
from perception.export.checkpoint_export import PARITY, check_frames_from
from perception.export.onnx_export import export_onnx
from perception.export.random_model import random_net_and_contract
from perception.export.tensorrt_build import (
    PLUGIN_INPUTS,
    PLUGIN_OP,
    PLUGIN_OUTPUTS,
    build_engine,
    onnx_contract,
    trt_onnx,
)
from perception.nets.contract_graph import DecodedGraph
from perception.postprocess.nms import box_iou
from perception.runtime import BACKENDS, backend_for_path, build_backend
from perception.runtime.contract import ModelContract, check_model_io
from perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from perception.runtime.tensorrt_backend import (
    TRT_MISSING,
    TensorRTBackend,
    contract_path_for,
    tensorrt_available,
)

SIZE = (64, 96)
TRT_OK, TRT_WHY = tensorrt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=TRT_WHY)
# FP16 engines compute the head in half precision: scores in [0, 1] are ~5e-4 apart there, and a score
# that moves across the threshold or an IoU that moves across the NMS threshold adds or drops a box.
FP16_SCORE_DIFF = 5e-3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[torch.nn.Module, ModelContract, Path]:
    """(net, contract, TensorRT-flavoured ONNX path); cls_prior 0.3 so random weights give detections."""
    net, contract, _ = random_net_and_contract(input_size=SIZE, cls_prior=0.3, seed=1, max_dets=50)
    contract = replace(contract, score_threshold=0.2, iou_threshold=0.45)
    path = trt_onnx(net, contract, tmp_path_factory.mktemp("trt") / "tiny-trt.onnx")
    return net, contract, path


def _images(n: int = 4) -> np.ndarray:
    return np.stack(check_frames_from(None, SIZE, n=n, seed=3))


def _plugin_node(model: onnx.ModelProto) -> onnx.NodeProto:
    nodes = [n for n in model.graph.node if n.op_type == PLUGIN_OP]
    assert len(nodes) == 1, f"expected one {PLUGIN_OP} node, found {len(nodes)}"
    return nodes[0]


def _attr(attr: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attr)
    return value.decode() if isinstance(value, bytes) else value


# --- CPU: the graph -------------------------------------------------------------------------------------
def test_one_efficient_nms_node_with_contract_attributes(tiny):
    _, contract, path = tiny
    model = onnx.load(str(path))
    node = _plugin_node(model)
    attrs = {a.name: _attr(a) for a in node.attribute}
    assert attrs == {
        "plugin_version": "1",
        "background_class": -1,
        "box_coding": 0,
        "class_agnostic": 0,
        "iou_threshold": pytest.approx(contract.iou_threshold),
        "max_output_boxes": contract.max_dets,
        "score_activation": 0,
        "score_threshold": pytest.approx(contract.score_threshold),
    }
    assert (
        node.domain == "TRT" and list(node.input) == list(PLUGIN_INPUTS) and list(node.output) == list(PLUGIN_OUTPUTS)
    )
    assert not [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    # TensorRT converts uint8 only from/to float: the input is cast before anything else touches it.
    first = next(n for n in model.graph.node if contract.input_name in n.input)
    assert first.op_type == "Cast"


def test_outputs_and_metadata_follow_fused_contract(tiny):
    _, contract, path = tiny
    model = onnx.load(str(path))
    assert onnx_contract(path).max_dets == contract.max_dets
    assert onnx_contract(path).format == "fused"

    def specs(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
            out.append((v.name, dtype, tuple(d.dim_param or d.dim_value for d in t.shape.dim)))
        return out

    check_model_io(contract, specs(model.graph.input), specs(model.graph.output), str(path))
    k = contract.max_dets
    assert specs(model.graph.output) == [
        ("seg", "uint8", ("N", *SIZE)),
        ("dets", "float32", ("N", k, 6)),
        ("num_dets", "int32", ("N",)),
    ]


def test_whole_frame_engine_graph_letterboxes_in_float_and_keeps_the_plugin(tiny, tmp_path):
    """A whole-frame contract gives one graph from camera frame to outputs: Resize + Pad on floats in
    front (TensorRT takes uint8 only in casts), EfficientNMS, then boxes mapped to frame pixels."""
    net, contract, _ = tiny
    whole = replace(contract, frame_size=(100, 150), version=2)
    path = trt_onnx(net, whole, tmp_path / "whole-trt.onnx")
    model = onnx.load(str(path))
    _plugin_node(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 100, 150, 3]
    ops = [n.op_type for n in model.graph.node]
    assert ops.index("Resize") < ops.index(PLUGIN_OP) and "Pad" in ops
    values = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    assert values["letterboxed"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx_contract(path).frame_size == (100, 150)
    producer = next(n for n in model.graph.node if "dets" in n.output)
    assert producer.op_type == "Concat" and "d_clip" in producer.input, "dets must leave in frame pixels"


def test_graph_before_plugin_matches_eager(tiny, tmp_path):
    """Cut at the plugin's inputs and run that part with ONNX Runtime: seg, boxes, scores as eager torch."""
    net, contract, path = tiny
    cut = tmp_path / "before.onnx"
    onnx.utils.extract_model(str(path), str(cut), [contract.input_name], ["seg", *PLUGIN_INPUTS])
    images = _images()
    seg, boxes, scores_nac = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"]).run(
        None, {contract.input_name: images}
    )
    eager = DecodedGraph(net, contract.input_size, contract.strides, contract.color).eval()
    with torch.no_grad():
        want_seg, want_boxes, want_scores = (t.numpy() for t in eager(torch.from_numpy(images)))
    assert (seg == want_seg).mean() >= PARITY["seg_agreement"]
    np.testing.assert_allclose(boxes, want_boxes, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scores_nac, want_scores.transpose(0, 2, 1), atol=1e-5)


def test_ops_after_plugin_pad_rows_with_zeros(tiny, tmp_path):
    """Feed made-up plugin outputs (garbage past num_detections) to the tail: dets rows and num_dets."""
    _, contract, path = tiny
    cut = tmp_path / "after.onnx"
    onnx.utils.extract_model(str(path), str(cut), list(PLUGIN_OUTPUTS), ["dets", "num_dets"])
    k = contract.max_dets
    rng = np.random.default_rng(0)
    feeds = {
        "num_detections": np.array([[3], [0]], np.int32),
        "detection_boxes": rng.uniform(0, 90, (2, k, 4)).astype(np.float32),
        "detection_scores": rng.uniform(0.2, 1, (2, k)).astype(np.float32),
        "detection_classes": np.full((2, k), 3, np.int32),
    }
    dets, num = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert num.dtype == np.int32 and num.tolist() == [3, 0]
    assert dets.dtype == np.float32 and dets.shape == (2, k, 6)
    np.testing.assert_array_equal(dets[0, :3, :4], feeds["detection_boxes"][0, :3])
    np.testing.assert_array_equal(dets[0, :3, 4], feeds["detection_scores"][0, :3])
    np.testing.assert_array_equal(dets[0, :3, 5], [3, 3, 3])
    assert not dets[0, 3:].any() and not dets[1].any(), "rows past num_dets must be zero"


@pytest.mark.parametrize(
    "change, needle",
    [({"format": "raw"}, "fused"), ({"box_encoding": "ltrb"}, "ltrb_softplus")],
)
def test_trt_onnx_refuses_what_it_cannot_build(tiny, tmp_path, change, needle):
    net, contract, _ = tiny
    with pytest.raises(ValueError, match=needle):
        trt_onnx(net, replace(contract, **change), tmp_path / "x.onnx")


# --- CPU: registry and errors -----------------------------------------------------------------------------
def test_registry_maps_engine_files_to_tensorrt():
    assert backend_for_path("models/m.engine") == "tensorrt"
    assert backend_for_path("models/M.PLAN") == "tensorrt"
    assert BACKENDS["tensorrt"] == ("perception.runtime.tensorrt_backend", "TensorRTBackend")


def test_missing_sidecar_contract_names_the_file(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(ModelError, match=r"m\.engine: no contract file m\.engine\.contract\.json"):
        build_backend("auto", engine)


def test_int8_without_frames_or_cache_is_refused_before_any_gpu_work(tiny, tmp_path):
    _, _, path = tiny
    with pytest.raises(ModelError, match="int8 needs calibration frames"):
        build_engine(path, tmp_path / "m.engine", precision="int8")


@pytest.mark.skipif(TRT_OK, reason="tensorrt is available here")
def test_build_without_tensorrt_says_how_to_get_it(tiny, tmp_path):
    _, _, path = tiny
    with pytest.raises(ModelError) as err:
        build_engine(path, tmp_path / "m.engine")
    assert str(err.value) == TRT_WHY


@pytest.mark.skipif(TRT_OK, reason="tensorrt is available here")
def test_load_without_tensorrt_says_how_to_get_it(tiny, tmp_path):
    _, contract, _ = tiny
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    contract_path_for(engine).write_text(contract.to_json())
    with pytest.raises(ModelError) as err:
        TensorRTBackend(engine)
    assert str(err.value) == TRT_WHY
    if "tensorrt is not installed" in TRT_WHY:
        assert str(err.value) == TRT_MISSING


# --- GPU: engines ---------------------------------------------------------------------------------------
def _match(a: np.ndarray, b: np.ndarray, score_diff: float) -> tuple[int, float, float]:
    """Greedy one-to-one match of dets rows a to b (same class, IoU >= PARITY box_iou, best IoU first):
    (matched, worst IoU, worst score difference)."""
    if not len(a) or not len(b):
        return 0, 1.0, 0.0
    iou = box_iou(a[:, :4], b[:, :4])
    iou[a[:, 5][:, None] != b[:, 5][None, :]] = 0
    used: set[int] = set()
    matched, worst_iou, worst_diff = 0, 1.0, 0.0
    for r in np.argsort(-a[:, 4]):
        order = [c for c in np.argsort(-iou[r]) if c not in used]
        if order and iou[r, order[0]] >= PARITY["box_iou"] and abs(a[r, 4] - b[order[0], 4]) <= score_diff:
            used.add(order[0])
            matched += 1
            worst_iou = min(worst_iou, float(iou[r, order[0]]))
            worst_diff = max(worst_diff, abs(float(a[r, 4] - b[order[0], 4])))
    return matched, worst_iou, worst_diff


def _compare(engine_out: dict, ref_out: dict, score_diff: float) -> tuple[float, int, int, int]:
    """(seg agreement, engine dets, reference dets, matched) over the batch."""
    seg = float((engine_out["seg"] == ref_out["seg"]).mean())
    n_eng = n_ref = matched = 0
    for i in range(len(ref_out["num_dets"])):
        a = engine_out["dets"][i, : engine_out["num_dets"][i]]
        b = ref_out["dets"][i, : ref_out["num_dets"][i]]
        n_eng, n_ref = n_eng + len(a), n_ref + len(b)
        matched += _match(a, b, score_diff)[0]
        assert not engine_out["dets"][i, engine_out["num_dets"][i] :].any(), "padding rows must be zero"
    return seg, n_eng, n_ref, matched


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> OnnxRuntimeBackend:
    net, contract, _ = tiny
    path = export_onnx(net, contract, tmp_path_factory.mktemp("ref") / "tiny.onnx")
    return OnnxRuntimeBackend(path, providers=("CPUExecutionProvider",))


@needs_trt
def test_fp32_engine_matches_onnxruntime_at_parity_tolerances(tiny, reference, tmp_path):
    _, contract, path = tiny
    build = build_engine(path, tmp_path / "m.engine", precision="fp32", max_batch=4)
    backend = build_backend("auto", build.engine)
    try:
        assert isinstance(backend, TensorRTBackend) and "FP32" in backend.description
        images = _images(4)
        seg, n_eng, n_ref, matched = _compare(backend.infer(images), reference.infer(images), PARITY["score_diff"])
        assert seg >= PARITY["seg_agreement"]
        assert n_ref > 0 and n_eng == n_ref == matched, (n_eng, n_ref, matched)
        with pytest.raises(ValueError, match="maximum batch 4"):
            backend.infer(_images(5))
    finally:
        backend.close()


@needs_trt
def test_fp16_engine_matches_onnxruntime(tiny, reference, tmp_path):
    """Seg as strict as the ONNX export; detections matched one to one at IoU >= 0.95 but with a score
    tolerance of 5e-3 (half precision), and up to 5 % of boxes may appear or vanish at a threshold."""
    _, _, path = tiny
    build = build_engine(path, tmp_path / "m.engine", precision="fp16", max_batch=4)
    backend = TensorRTBackend(build.engine)
    try:
        images = _images(4)
        out = backend.infer(images)
        seg, n_eng, n_ref, matched = _compare(out, reference.infer(images), FP16_SCORE_DIFF)
        assert seg >= PARITY["seg_agreement"]
        assert n_ref > 0 and matched >= 0.95 * max(n_eng, n_ref), (n_eng, n_ref, matched)
        sidecar = json.loads(build.contract.read_text())
        assert sidecar["name"].endswith("-trt-fp16") and sidecar["format"] == "fused"
        assert sidecar["tensorrt"]["precision"] == "fp16" and sidecar["tensorrt"]["max_batch"] == 4
    finally:
        backend.close()


@needs_trt
def test_int8_engine_calibrates_and_caches_its_table(tiny, tmp_path):
    _, contract, path = tiny
    engine = tmp_path / "m.engine"
    build = build_engine(path, engine, precision="int8", calib_frames=_images(16), max_batch=2)
    assert build.calibration_cache is not None and build.calibration_cache.stat().st_size > 0
    backend = TensorRTBackend(engine)
    try:
        out = backend.infer(_images(2))
        assert out["dets"].shape == (2, contract.max_dets, 6) and out["num_dets"].dtype == np.int32
    finally:
        backend.close()
    # The cached table replaces the frames on a rebuild.
    assert build_engine(path, engine, precision="int8", max_batch=2).engine == engine


@needs_trt
def test_timing_cache_is_reused_by_the_next_build(tiny, tmp_path):
    _, _, path = tiny
    cache = tmp_path / "timing.cache"
    first = build_engine(path, tmp_path / "a.engine", timing_cache=cache, max_batch=2)
    assert first.timing_cache_reused_bytes == 0 and cache.stat().st_size > 0
    size = cache.stat().st_size
    second = build_engine(path, tmp_path / "b.engine", timing_cache=cache, max_batch=2)
    assert second.timing_cache_reused_bytes == size
