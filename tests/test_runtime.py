"""Backends, the model contract, and export parity (fused graph vs host decode + NMS vs eager torch)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import TEST_INPUT_SIZE
from onnx import TensorProto, helper

from perception.errors import ModelError
from perception.postprocess.network_outputs import DetectionSettings, unpack_outputs
from perception.postprocess.nms import box_iou
from perception.runtime import build_backend
from perception.runtime.contract import METADATA_KEY, ModelContract, check_model_io
from perception.runtime.onnxruntime_backend import OnnxRuntimeBackend, choose_providers


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = TEST_INPUT_SIZE
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_contract_json_round_trip():
    c = ModelContract(
        input_size=(384, 640),
        seg_classes=("background", "drivable", "lane"),
        det_classes=("car", "pedestrian"),
        extra={"normalize": {"mean": [0.5] * 3}},
    )
    back = ModelContract.from_json(c.to_json())
    assert back == c
    d = json.loads(c.to_json())
    # The keys DESIGN.md promises keep their meaning.
    assert d["input"] == {
        "name": "images",
        "layout": "NHWC",
        "color": "BGR",
        "dtype": "uint8",
        "size": [384, 640],
        "letterbox": {"pad_value": 114, "align": "center"},
    }
    assert d["thresholds"] == {"score": 0.25, "iou": 0.5}
    assert set(d["outputs"]) == {"seg", "dets", "num_dets"}


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"input_size": (100, 640)}, "divisible"),
        ({"format": "onnx"}, "format"),
        ({"score_threshold": 2.0}, "thresholds"),
        ({"score_threshold": 0.3, "display_score_threshold": 0.2}, "display score 0.2"),
        ({"version": 99}, "newer"),
    ],
)
def test_contract_rejects_bad_values(bad, needle):
    base = dict(input_size=(384, 640), seg_classes=("b", "r"), det_classes=("car",))
    with pytest.raises(ValueError, match=needle):
        ModelContract(**{**base, **bad})


def test_display_threshold_is_the_hosts_default_and_the_graph_keeps_its_tail():
    c = ModelContract(
        input_size=(64, 96),
        seg_classes=("b", "r"),
        det_classes=("car",),
        score_threshold=0.01,
        display_score_threshold=0.3,
    )
    back = ModelContract.from_json(c.to_json())
    assert back == c and json.loads(c.to_json())["thresholds"] == {"score": 0.01, "iou": 0.5, "display_score": 0.3}
    assert DetectionSettings.from_contract(c).score_threshold == 0.3
    assert DetectionSettings.from_contract(c, score_threshold=0.05).score_threshold == 0.05
    plain = replace(c, display_score_threshold=None)
    assert DetectionSettings.from_contract(plain).score_threshold == 0.01


def test_eval_scores_the_graphs_whole_ranking_while_a_run_shows_the_display_threshold(tmp_path):
    from perception.config import PipelineConfig
    from perception.eval.predictors import PipelinePredictor
    from perception.export.random_model import make_random_model
    from perception.pipeline import build_pipeline

    path = make_random_model(tmp_path / "m.onnx", input_size=TEST_INPUT_SIZE, cls_prior=0.3, score_threshold=0.01)
    model = onnx.load(str(path))
    contract = ModelContract.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    model.metadata_props[0].value = replace(contract, display_score_threshold=0.5).to_json()
    onnx.save(model, str(path))
    assert build_pipeline(PipelineConfig(model=str(path))).settings.score_threshold == 0.5
    assert PipelinePredictor(str(path)).pipeline.settings.score_threshold == 0.01
    assert PipelinePredictor(str(path), whole_ranking=False).pipeline.settings.score_threshold == 0.5
    assert PipelinePredictor(str(path), score_threshold=0.2).pipeline.settings.score_threshold == 0.2


def test_contract_from_json_errors_name_the_source():
    with pytest.raises(ModelError, match="m.onnx.*not valid JSON"):
        ModelContract.from_json("{nope", "m.onnx")
    with pytest.raises(ModelError, match="m.onnx.*invalid"):
        ModelContract.from_json('{"seg_classes": []}', "m.onnx")


def test_check_model_io_reports_expected_and_found():
    c = ModelContract(input_size=(128, 224), seg_classes=("a", "b"), det_classes=("car",))
    good_in = [("images", "uint8", ("N", 128, 224, 3))]
    good_out = [("seg", "uint8", ("N", 128, 224)), ("dets", "float32", ("N", 100, 6)), ("num_dets", "int32", ("N",))]
    check_model_io(c, good_in, good_out, "m.onnx")
    check_model_io(c, [("images", "uint8", (None, 128, 224, 3))], good_out + [("extra", "float32", (1,))], "m.onnx")
    with pytest.raises(ModelError, match=r"input 'images' expected uint8 \[N,128,224,3\], found float32"):
        check_model_io(c, [("images", "float32", ("N", 128, 224, 3))], good_out, "m.onnx")
    with pytest.raises(ModelError, match=r"output 'dets' expected float32 \[N,K,6\], found float32 \[N,100,5\]"):
        check_model_io(c, good_in, [good_out[0], ("dets", "float32", ("N", 100, 5)), good_out[2]], "m.onnx")
    with pytest.raises(ModelError, match="output 'num_dets'.*missing"):
        check_model_io(c, good_in, good_out[:2], "m.onnx")


def test_choose_providers_prefers_in_order_and_always_has_cpu():
    pref = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert choose_providers(pref, ["CPUExecutionProvider"]) == (
        ["CPUExecutionProvider"],
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    )
    assert choose_providers(pref, ["CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"])[
        0
    ] == list(pref)
    assert choose_providers(("CUDAExecutionProvider",), ["CPUExecutionProvider"])[0] == ["CPUExecutionProvider"]


def test_onnxruntime_backend_logs_provider_choice(fused_model, caplog):
    caplog.set_level("INFO")
    backend = OnnxRuntimeBackend(fused_model)
    assert "CPUExecutionProvider" in backend.providers
    assert any("running on" in r.message for r in caplog.records)


def test_fused_model_outputs_follow_contract(fused_model):
    backend = build_backend("auto", fused_model)
    assert backend.contract.format == "fused"
    out = backend.infer(_images(3))
    h, w = TEST_INPUT_SIZE
    assert out["seg"].dtype == np.uint8 and out["seg"].shape == (3, h, w)
    assert out["dets"].dtype == np.float32 and out["dets"].shape == (3, backend.contract.max_dets, 6)
    assert out["num_dets"].dtype == np.int32 and out["num_dets"].shape == (3,)
    assert out["seg"].max() < len(backend.contract.seg_classes)
    for i in range(3):
        k = int(out["num_dets"][i])
        assert 0 < k <= backend.contract.max_dets
        rows = out["dets"][i]
        assert np.all(rows[k:] == 0), "padding rows must be zero"
        valid = rows[:k]
        assert np.all(np.diff(valid[:, 4]) <= 0), "rows sorted by score"
        assert np.all(valid[:, 4] > backend.contract.score_threshold)
        assert set(np.unique(valid[:, 5])) <= set(range(len(backend.contract.det_classes)))


def test_batch_results_equal_single_image_results(fused_model):
    backend = build_backend("onnxruntime", fused_model)
    images = _images(3, seed=5)
    batch = backend.infer(images)
    for i in range(3):
        single = backend.infer(images[i : i + 1])
        k = int(single["num_dets"][0])
        assert k == int(batch["num_dets"][i])
        np.testing.assert_allclose(single["dets"][0, :k], batch["dets"][i, :k], atol=1e-4)
        assert np.mean(single["seg"][0] == batch["seg"][i]) > 0.999


def test_fused_graph_matches_host_decode_and_nms(fused_model, raw_model):
    """In-graph NonMaxSuppression vs host decode + NMS on the same weights: matched one to one."""
    fused = build_backend("onnxruntime", fused_model)
    raw = build_backend("onnxruntime", raw_model)
    settings = DetectionSettings.from_contract(fused.contract)
    for seed in range(4):
        images = _images(2, seed=seed)
        a = unpack_outputs(fused.infer(images), fused.contract, settings)
        b = unpack_outputs(raw.infer(images), raw.contract, settings)
        for (seg_a, det_a), (seg_b, det_b) in zip(a, b, strict=True):
            assert np.mean(seg_a.class_ids == seg_b.class_ids) >= 0.995
            assert len(det_a) == len(det_b) > 0
            iou = box_iou(det_a.boxes_xyxy, det_b.boxes_xyxy)
            same_class = det_a.labels[:, None] == det_b.labels[None, :]
            score_close = np.abs(det_a.scores[:, None] - det_b.scores[None, :]) <= 1e-3
            match = (iou >= 0.95) & same_class & score_close
            assert match.any(1).all() and match.any(0).all()


def test_fused_graph_with_no_detections_and_high_threshold(model_dir):
    from perception.export.random_model import make_random_model

    path = make_random_model(
        model_dir / "silent.onnx", input_size=TEST_INPUT_SIZE, cls_prior=0.001, score_threshold=0.99
    )
    backend = build_backend("onnxruntime", path)
    out = backend.infer(_images(2))
    assert out["num_dets"].tolist() == [0, 0]
    assert np.all(out["dets"] == 0)


def test_torch_backend_matches_onnx_raw_export(torch_checkpoint, raw_model):
    """Eager PyTorch vs its ONNX export at a stated tolerance (logits within 1e-3, seg ≥ 99.5 % equal)."""
    pytest.importorskip("torch")
    eager = build_backend("auto", torch_checkpoint)
    onnx_raw = build_backend("auto", raw_model)
    assert eager.contract.format == "raw"
    images = _images(2, seed=3)
    a, b = eager.infer(images), onnx_raw.infer(images)
    assert set(a) == set(b)
    for name in a:
        if name == "seg":
            assert np.mean(a[name] == b[name]) >= 0.995
        else:
            np.testing.assert_allclose(a[name], b[name], atol=1e-3, rtol=1e-3)


def test_unknown_backend_lists_valid_names(fused_model):
    with pytest.raises(ValueError, match="valid names.*onnxruntime.*torch"):
        build_backend("tensorflow", fused_model)


def test_refuses_missing_empty_and_non_onnx_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "none.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        OnnxRuntimeBackend(tmp_path / "empty.onnx")
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 10)
    with pytest.raises(ModelError, match=r"text\.onnx: .*(not an ONNX model|cannot load)"):
        OnnxRuntimeBackend(tmp_path / "text.onnx")


def _identity_model(path, meta: dict | None = None):
    x = helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 128, 224, 3])
    y = helper.make_tensor_value_info("seg", TensorProto.UINT8, ["N", 128, 224, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["seg"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if meta:
        helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def test_refuses_onnx_without_contract(tmp_path):
    path = _identity_model(tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match=r"plain\.onnx: no 'perception\.contract' metadata"):
        OnnxRuntimeBackend(path)


def test_refuses_onnx_whose_shapes_differ_from_its_contract(tmp_path, fused_model):
    contract = ModelContract(input_size=(128, 224), seg_classes=("b", "d", "l"), det_classes=("car",))
    path = _identity_model(tmp_path / "shapes.onnx", {METADATA_KEY: contract.to_json()})
    with pytest.raises(
        ModelError,
        match=r"shapes\.onnx: .*output 'seg' expected uint8 \[N,128,224\], found uint8 "
        r"\[N,128,224,3\].*output 'dets'.*missing",
    ):
        OnnxRuntimeBackend(path)
    # A real export whose contract claims another input size.
    model = onnx.load(str(fused_model))
    meta = json.loads(model.metadata_props[0].value)
    meta["input"]["size"] = [256, 448]
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save(model, str(tmp_path / "lies.onnx"))
    with pytest.raises(ModelError, match=r"input 'images' expected uint8 \[N,256,448,3\], found uint8 \[N,128,224,3\]"):
        OnnxRuntimeBackend(tmp_path / "lies.onnx")


def test_torch_backend_refuses_bad_checkpoints(tmp_path, torch_checkpoint):
    torch = pytest.importorskip("torch")
    from perception.runtime.torch_backend import TorchBackend

    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match=r"junk\.pt: not a PyTorch checkpoint"):
        TorchBackend(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match=r"partial\.pt: checkpoint needs keys"):
        TorchBackend(tmp_path / "partial.pt")
    ckpt = torch.load(torch_checkpoint, weights_only=True)
    ckpt["arch_kwargs"]["width"] = 16
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ModelError, match=r"mismatch\.pt: checkpoint does not build its network"):
        TorchBackend(tmp_path / "mismatch.pt")


def test_infer_rejects_wrong_input(fused_model):
    backend = build_backend("onnxruntime", fused_model)
    with pytest.raises(ValueError, match="uint8"):
        backend.infer(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        backend.infer(_images(1).astype(np.float32))


def test_raw_contract_lists_per_stride_outputs():
    c = replace(ModelContract(input_size=(64, 96), seg_classes=("b", "r"), det_classes=("car", "sign")), format="raw")
    names = [n for n, _, _ in c.expected_outputs()]
    assert names == ["seg", "cls_s8", "box_s8", "cls_s16", "box_s16", "cls_s32", "box_s32"]
    assert dict((n, s) for n, _, s in c.expected_outputs())["cls_s16"] == ("N", 2, 4, 6)
