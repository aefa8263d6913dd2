"""A tiny multi-task network: encoder, U-Net-style segmentation head, anchor-free detection head.

It is small enough to export and run in a test in well under a second, so the whole runtime path can be
exercised with random weights before a trained model exists. The trained networks (see the model card)
follow the same output contract.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiTaskOutput(NamedTuple):
    """Raw network outputs for a batch of N images of size H x W.

    seg_logits: float [N, S, H, W]; cls_maps[i]: float [N, C, H/s_i, W/s_i] class logits;
    box_maps[i]: float [N, 4, H/s_i, W/s_i] l, t, r, b distances before the box encoding's activation.
    """

    seg_logits: torch.Tensor
    cls_maps: list[torch.Tensor]
    box_maps: list[torch.Tensor]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyMultiTaskNet(nn.Module):
    """Strides 2..32 encoder; seg head at stride 4 upsampled to full size; det head on strides 8/16/32.

    Args:
        num_seg_classes: S, segmentation classes including background.
        num_det_classes: C, detection classes.
        width: channels of the first stage; later stages scale from it.
        cls_prior: initial class probability (sets the class-logit bias, as in RetinaNet).
    """

    strides = (8, 16, 32)

    def __init__(self, num_seg_classes: int = 3, num_det_classes: int = 4, width: int = 8, cls_prior: float = 0.01):
        super().__init__()
        w = width
        self.stem = _conv(3, w, 2)  # /2
        self.s4 = _conv(w, 2 * w, 2)  # /4
        self.s8 = _conv(2 * w, 3 * w, 2)  # /8
        self.s16 = _conv(3 * w, 4 * w, 2)  # /16
        self.s32 = _conv(4 * w, 6 * w, 2)  # /32
        self.up8 = _conv(3 * w + 4 * w, 2 * w)
        self.up4 = _conv(2 * w + 2 * w, 2 * w)
        self.seg_out = nn.Conv2d(2 * w, num_seg_classes, 1)
        self.cls_heads = nn.ModuleList(nn.Conv2d(c, num_det_classes, 1) for c in (3 * w, 4 * w, 6 * w))
        self.box_heads = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in (3 * w, 4 * w, 6 * w))
        bias = -math.log((1 - cls_prior) / cls_prior)
        for head in self.cls_heads:
            nn.init.constant_(head.bias, bias)

    def forward(self, x: torch.Tensor) -> MultiTaskOutput:
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        u8 = self.up8(torch.cat([f8, F.interpolate(f16, size=f8.shape[-2:], mode="nearest")], 1))
        u4 = self.up4(torch.cat([f4, F.interpolate(u8, size=f4.shape[-2:], mode="nearest")], 1))
        seg = F.interpolate(self.seg_out(u4), size=x.shape[-2:], mode="bilinear", align_corners=False)
        feats = (f8, f16, f32)
        cls_maps = [head(f) for head, f in zip(self.cls_heads, feats, strict=True)]
        box_maps = [head(f) for head, f in zip(self.box_heads, feats, strict=True)]
        return MultiTaskOutput(seg, cls_maps, box_maps)
