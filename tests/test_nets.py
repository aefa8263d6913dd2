"""The multi-task network and its comparison mode: output contract, registry errors, FLOPs, export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from perception.export.checkpoint_export import check_parity, count_gflops, export_checkpoint
from perception.export.onnx_export import export_onnx
from perception.nets import build_net
from perception.nets.checkpoints import save_model_checkpoint
from perception.nets.multitask import MultiTaskNet, build_encoder
from perception.runtime.contract import ModelContract

SMALL = {"encoder": "tu-mobilenetv4_conv_small", "seg_width": 8, "det_width": 16}


@pytest.mark.parametrize("seg_out_stride", [2, 4, 8])
def test_multitask_output_shapes(seg_out_stride):
    net = MultiTaskNet(**SMALL, seg_out_stride=seg_out_stride).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 96))
    assert out.seg_logits.shape == (2, 3, 64, 96)
    assert [tuple(m.shape) for m in out.cls_maps] == [(2, 4, 8, 12), (2, 4, 4, 6), (2, 4, 2, 3)]
    assert [tuple(m.shape) for m in out.box_maps] == [(2, 4, 8, 12), (2, 4, 4, 6), (2, 4, 2, 3)]


def test_class_prior_sets_initial_scores():
    net = MultiTaskNet(**SMALL, cls_prior=0.05).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 64))
    # the head's last conv starts near zero weight only through its bias: mean score close to the prior
    assert 0.01 < float(torch.sigmoid(out.cls_maps[0]).mean()) < 0.2


def test_separate_nets_same_contract():
    net = build_net(
        "separate", encoder="tu-mobilenetv4_conv_small", det_width=16, seg_decoder_channels=(32, 24, 16, 8, 8)
    ).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 96))
    assert out.seg_logits.shape == (1, 3, 64, 96)
    assert [m.shape[-2:] for m in out.cls_maps] == [(8, 12), (4, 6), (2, 3)]


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid names"):
        build_net("resnet-transformer-xl")
    with pytest.raises(ValueError, match="valid smp encoders: .*mobilenet_v2"):
        build_encoder("no-such-encoder")


def test_gflops_hand_computed():
    """One 3x3 conv 3->8 at 16x16 plus a linear 8->2: 2 * (16*16*8*27 + 2*8) FLOPs."""

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    assert count_gflops(Toy(), (16, 16)) == pytest.approx(2 * (16 * 16 * 8 * 27 + 2 * 8) / 1e9)


def _contract(size=(64, 96), **kw) -> ModelContract:
    return ModelContract(
        input_size=size,
        seg_classes=("background", "drivable", "lane"),
        det_classes=("car", "pedestrian", "cyclist", "traffic_sign"),
        **kw,
    )


def _frames(n=4, size=(64, 96), seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), size[::-1]) for _ in range(n)]


@pytest.mark.parametrize("arch", ["multitask", "separate"])
def test_fused_export_matches_eager(tmp_path, arch):
    """ONNX Runtime vs eager PyTorch + host NMS: seg pixels and detections within the stated tolerance."""
    torch.manual_seed(0)
    kwargs = (
        SMALL
        if arch == "multitask"
        else {"encoder": "tu-mobilenetv4_conv_small", "det_width": 16, "seg_decoder_channels": (32, 24, 16, 8, 8)}
    )
    net = build_net(arch, cls_prior=0.3, **kwargs).eval()  # prior 0.3: boxes pass the threshold
    # random BatchNorm statistics, so the export is checked with non-trivial normalisation folded in
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    contract = _contract(score_threshold=0.2)
    path = export_onnx(net, contract, tmp_path / "m.onnx")
    report = check_parity(path, net, contract, _frames())
    assert report.ok, str(report)
    assert report.dets_onnx > 0, "the check must compare some detections"


def test_export_checkpoint_cli_report(tmp_path):
    torch.manual_seed(1)
    net = build_net("multitask", cls_prior=0.3, **SMALL)
    ckpt = save_model_checkpoint(tmp_path / "m.pt", net, _contract(format="raw"), "multitask", SMALL)
    text = export_checkpoint(ckpt, tmp_path / "m.onnx", score_threshold=0.2)
    assert "parity over 8 frames" in text and "OK" in text and "GFLOPs" in text
    assert (tmp_path / "m.onnx").stat().st_size > 0
