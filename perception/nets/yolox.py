"""YOLOX-Nano as a trunk: CSPDarknet backbone, PAFPN neck and decoupled head, with a U-Net segmentation head.

The modules mirror Megvii's YOLOX (Apache-2.0) layer for layer, so the official ``yolox_nano`` ONNX
release can be loaded into them (``perception.train.init_sources``). That release has its batch-norm
folded into the convolutions, so every convolution here carries a bias and there is no BatchNorm in the
pretrained part; the segmentation head, trained here, keeps its own BatchNorm.

Data flow inside ``YoloxMultiTaskNet.forward``::

    image [N,3,H,W] normalised RGB ─► to YOLOX's input (BGR, 0..255)
      ─► backbone: stem (s2, 16 ch) ─► dark2 (s4, 32) ─► dark3 (s8, 64) ─► dark4 (s16, 128) ─► dark5 (s32, 256)
           ├─► U-Net decoder on strides 32..4 ─► seg logits [N,S,H,W]
           └─► PAFPN (s8 64, s16 128, s32 256) ─► head per level ─► cls [N,C,h,w], box [N,4,h,w]

Box maps use the ``yolox_xywh`` encoding (``perception.postprocess.decode``): centre offsets from the
cell's top-left corner and log width/height, all in stride units. YOLOX scores a box as objectness x
class probability; the class maps returned here are the logits of that product (``joint_logits``), so
everything downstream treats them as plain per-class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from perception.nets.contract_graph import IMAGENET_MEAN, IMAGENET_STD
from perception.nets.multitask import UNetSegHead
from perception.nets.tiny import MultiTaskOutput

YOLOX_STRIDES = (8, 16, 32)


class FoldedConv(nn.Sequential):
    """Conv with bias (batch-norm folded in) → SiLU: YOLOX's ``BaseConv`` after BN folding."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=True), nn.SiLU())


class DWConv(nn.Sequential):
    """Depthwise k x k (+SiLU) then pointwise 1x1 (+SiLU): YOLOX's ``DWConv``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__(FoldedConv(cin, cin, k, stride, groups=cin), FoldedConv(cin, cout, 1))


class Bottleneck(nn.Module):
    def __init__(self, ch: int, shortcut: bool):
        super().__init__()
        self.conv1 = FoldedConv(ch, ch, 1)
        self.conv2 = DWConv(ch, ch, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPLayer(nn.Module):
    """Two 1x1 branches, ``n`` bottlenecks on the first, concatenated and fused by a 1x1."""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        hidden = cout // 2
        self.conv1 = FoldedConv(cin, hidden, 1)
        self.conv2 = FoldedConv(cin, hidden, 1)
        self.conv3 = FoldedConv(2 * hidden, cout, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv1 and conv2 run before the bottlenecks: the order the ONNX release's convolutions follow
        x1 = self.conv1(x)
        x2 = self.conv2(x)
        return self.conv3(torch.cat([self.m(x1), x2], 1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: Sequence[int] = (5, 9, 13)):
        super().__init__()
        hidden = cin // 2
        self.conv1 = FoldedConv(cin, hidden, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.conv2 = FoldedConv(hidden * (len(kernels) + 1), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(p(x) for p in self.pools)], 1))


class Focus(nn.Module):
    """Space-to-depth (pixels (0,0), (1,0), (0,1), (1,1) of each 2x2 block as channels) → 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = FoldedConv(4 * cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl, bl = x[..., ::2, ::2], x[..., 1::2, ::2]
        tr, br = x[..., ::2, 1::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat([tl, bl, tr, br], 1))


class CSPDarknetNano(nn.Module):
    """YOLOX-Nano backbone (depth 0.33, width 0.25, depthwise). Returns features at strides 2, 4, 8, 16, 32
    with 16, 32, 64, 128, 256 channels."""

    channels = (16, 32, 64, 128, 256)

    def __init__(self):
        super().__init__()
        c = self.channels
        self.stem = Focus(3, c[0])
        self.dark2 = nn.Sequential(DWConv(c[0], c[1], 3, 2), CSPLayer(c[1], c[1], 1))
        self.dark3 = nn.Sequential(DWConv(c[1], c[2], 3, 2), CSPLayer(c[2], c[2], 3))
        self.dark4 = nn.Sequential(DWConv(c[2], c[3], 3, 2), CSPLayer(c[3], c[3], 3))
        self.dark5 = nn.Sequential(
            DWConv(c[3], c[4], 3, 2), SPPBottleneck(c[4], c[4]), CSPLayer(c[4], c[4], 1, shortcut=False)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in (self.dark2, self.dark3, self.dark4, self.dark5):
            feats.append(stage(feats[-1]))
        return feats


class PAFPNNano(nn.Module):
    """YOLOX's PAFPN at width 0.25: (s8 64, s16 128, s32 256) in, the same channels out."""

    def __init__(self):
        super().__init__()
        self.lateral_conv0 = FoldedConv(256, 128, 1)
        self.C3_p4 = CSPLayer(256, 128, 1, shortcut=False)
        self.reduce_conv1 = FoldedConv(128, 64, 1)
        self.C3_p3 = CSPLayer(128, 64, 1, shortcut=False)
        self.bu_conv2 = DWConv(64, 64, 3, 2)
        self.C3_n3 = CSPLayer(128, 128, 1, shortcut=False)
        self.bu_conv1 = DWConv(128, 128, 3, 2)
        self.C3_n4 = CSPLayer(256, 256, 1, shortcut=False)

    def forward(self, x8: torch.Tensor, x16: torch.Tensor, x32: torch.Tensor) -> list[torch.Tensor]:
        fpn_out0 = self.lateral_conv0(x32)
        f_out0 = self.C3_p4(torch.cat([F.interpolate(fpn_out0, size=x16.shape[-2:], mode="nearest"), x16], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([F.interpolate(fpn_out1, size=x8.shape[-2:], mode="nearest"), x8], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return [pan_out2, pan_out1, pan_out0]


def joint_logits(cls_logits: torch.Tensor, obj_logits: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(cls) * sigmoid(obj)), broadcasting obj [N,1,h,w] over classes [N,C,h,w].

    The product is capped at 1 - 1e-4 so the logit stays finite.
    """
    log_p = (F.logsigmoid(cls_logits) + F.logsigmoid(obj_logits)).clamp(max=-1e-4)
    return log_p - torch.log1p(-torch.exp(log_p))


class YoloxHead(nn.Module):
    """Per level: 1x1 stem to 64 ch, two DWConv per branch, then class, box and objectness 1x1 convs."""

    def __init__(self, num_classes: int, in_channels: Sequence[int] = (64, 128, 256), width: int = 64):
        super().__init__()
        self.stems = nn.ModuleList(FoldedConv(c, width, 1) for c in in_channels)
        self.cls_convs = nn.ModuleList(nn.Sequential(DWConv(width, width), DWConv(width, width)) for _ in in_channels)
        self.reg_convs = nn.ModuleList(nn.Sequential(DWConv(width, width), DWConv(width, width)) for _ in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(width, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(width, 1, 1) for _ in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cls_maps, box_maps = [], []
        for k, x in enumerate(feats):
            x = self.stems[k](x)
            cls = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            box_maps.append(self.reg_preds[k](reg_feat))
            cls_maps.append(joint_logits(cls, self.obj_preds[k](reg_feat)))
        return cls_maps, box_maps


class ToYoloxInput(nn.Module):
    """Normalised RGB (ImageNet mean/std, the project's network input) → BGR in 0..255, YOLOX's input."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("scale", 255.0 * torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", 255.0 * torch.tensor(mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scale + self.shift).flip(1)


class YoloxMultiTaskNet(nn.Module):
    """YOLOX-Nano backbone + PAFPN + head for detection, a U-Net head on the backbone for segmentation.

    Args:
        num_seg_classes: S (background, drivable, lane by default).
        num_det_classes: C.
        seg_width: U-Net decoder channels (see ``UNetSegHead``).
        seg_out_stride: stride the decoder stops at (2, 4 or 8).
    Input: float [N, 3, H, W], normalised RGB, H and W multiples of 32. Output: ``MultiTaskOutput`` with
    ``yolox_xywh`` box maps and joint (objectness x class) logits.
    """

    strides = YOLOX_STRIDES
    box_encoding = "yolox_xywh"
    # Stay float in an INT8 export. With batch-norm folded, a few channels of the stride-2 and stride-4
    # layers span far wider ranges than the rest, and one uint8 scale per tensor crushes the others:
    # quantizing everything, mAP50 fell from 0.51 to 0.02 (288x512). With those two float, the error of the
    # deeper stages still adds up: CamVid val mAP50 0.615 FP32, 0.599 INT8 (entropy ranges), no one stage
    # more than 0.006 of it. With the whole backbone float (neck and heads INT8) 0.613, car and pedestrian
    # within 0.01, at about the same speed on x86 (2.9 MB against 1.8 MB). `--int8-float` overrides.
    int8_float_modules = ("backbone",)

    def __init__(
        self, num_seg_classes: int = 3, num_det_classes: int = 4, seg_width: int = 32, seg_out_stride: int = 4
    ):
        super().__init__()
        self.to_input = ToYoloxInput()
        self.backbone = CSPDarknetNano()
        self.seg_head = UNetSegHead((3, *CSPDarknetNano.channels), num_seg_classes, seg_width, seg_out_stride)
        self.neck = PAFPNNano()
        self.det_head = YoloxHead(num_det_classes)

    @property
    def encoder(self) -> nn.Module:
        """The pretrained trunk that ``freeze_encoder_epochs`` freezes: the backbone."""
        return self.backbone

    def forward(self, x: torch.Tensor) -> MultiTaskOutput:
        feats = self.backbone(self.to_input(x))
        seg = self.seg_head([x, *feats], x.shape[-2:])
        cls_maps, box_maps = self.det_head(self.neck(*feats[2:]))
        return MultiTaskOutput(seg, cls_maps, box_maps)
