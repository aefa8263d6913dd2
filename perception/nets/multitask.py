"""The multi-task network: one smp encoder, a U-Net segmentation head and an anchor-free detection head.

Data flow inside ``forward``::

    image [N,3,H,W] ─► encoder (segmentation-models-pytorch, strides 2..32)
                          ├─► U-Net decoder (skips from stride 32 down to ``seg_stride``) ─► seg logits [N,S,H,W]
                          └─► PAN neck on strides 8/16/32 ─► decoupled head per level ─► cls [N,C,h,w], box [N,4,h,w]

Outputs are raw tensors (``MultiTaskOutput``); decoding, NMS and losses live in ``perception.postprocess``
and ``perception.train``. Box maps are l, t, r, b before ``softplus``, in stride units (``ltrb_softplus``).
Encoders are built with ``weights=None``: nothing is downloaded, every model here is trained from scratch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from perception.nets.tiny import MultiTaskOutput

DET_STRIDES = (8, 16, 32)


class ConvBNAct(nn.Sequential):
    """Conv (k x k, ``groups``) → BatchNorm → ReLU6 (ReLU6: clean INT8 ranges for the CPU export)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True) if act else nn.Identity(),
        )


class DWSep(nn.Sequential):
    """Depthwise 3x3 (+BN+act) then pointwise 1x1 (+BN+act): the cheap 3x3 block of the decoder and neck."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(ConvBNAct(cin, cin, 3, stride, groups=cin), ConvBNAct(cin, cout, 1))


def build_encoder(name: str, depth: int = 5) -> tuple[nn.Module, list[int]]:
    """An smp encoder by name, randomly initialised; returns it and its channels per stride (1, 2, .., 32).

    Raises ValueError listing smp's encoder names when ``name`` is unknown.
    """
    import segmentation_models_pytorch as smp

    try:
        encoder = smp.encoders.get_encoder(name, in_channels=3, depth=depth, weights=None)
    except KeyError as err:
        valid = ", ".join(smp.encoders.get_encoder_names())
        raise ValueError(f"unknown encoder {name!r}; valid smp encoders: {valid}") from err
    return encoder, list(encoder.out_channels)


class UNetSegHead(nn.Module):
    """U-Net decoder: from stride 32 up to ``out_stride``, each step upsample x2, concat the skip, DWSep.

    Args:
        enc_channels: encoder channels at strides 1, 2, 4, 8, 16, 32 (smp ``out_channels``).
        num_classes: S.
        width: decoder channels at stride 8 and finer; coarser steps use 2x (stride 16) of it.
        out_stride: 2, 4 or 8: the decoder stops there and the logits are upsampled bilinearly to the
            input size (a light variant decodes to stride 4: full-resolution decoding costs more than the
            encoder on a CPU and thin paint survives at stride 4).
    """

    def __init__(self, enc_channels: Sequence[int], num_classes: int, width: int = 32, out_stride: int = 4):
        super().__init__()
        if out_stride not in (2, 4, 8):
            raise ValueError(f"seg out_stride must be 2, 4 or 8, got {out_stride}")
        self.levels = {2: 1, 4: 2, 8: 3}[out_stride]  # index of the finest skip used
        ch = enc_channels
        self.top = ConvBNAct(ch[5], 2 * width, 1)
        blocks = []
        cin = 2 * width
        for i in range(4, self.levels - 1, -1):  # skips at strides 16, 8, 4, (2)
            cout = 2 * width if i == 4 else width
            blocks.append(DWSep(cin + ch[i], cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.top(feats[5])
        for block, i in zip(self.blocks, range(4, self.levels - 1, -1), strict=True):
            skip = feats[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)


class PANNeck(nn.Module):
    """Light FPN + PAN over strides 8/16/32: lateral 1x1 to ``width``, top-down adds, bottom-up adds."""

    def __init__(self, in_channels: Sequence[int], width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNAct(c, width, 1) for c in in_channels)
        self.td = nn.ModuleList(DWSep(width, width) for _ in in_channels[:-1])
        self.down = nn.ModuleList(ConvBNAct(width, width, 3, 2, groups=width) for _ in in_channels[:-1])
        self.bu = nn.ModuleList(DWSep(width, width) for _ in in_channels[:-1])

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lat = [f(x) for f, x in zip(self.lateral, feats, strict=True)]
        # top-down: coarse context into fine levels
        td = [lat[-1]]
        for i in range(len(lat) - 2, -1, -1):
            up = F.interpolate(td[0], size=lat[i].shape[-2:], mode="nearest")
            td.insert(0, self.td[i](lat[i] + up))
        # bottom-up: fine localisation into coarse levels
        out = [td[0]]
        for i in range(1, len(td)):
            out.append(self.bu[i - 1](td[i] + self.down[i - 1](out[-1])))
        return out


class DecoupledHead(nn.Module):
    """Per level: separate class and box branches (YOLOX-style decoupling), two DWSep blocks each."""

    def __init__(self, width: int, num_classes: int, levels: int = 3, cls_prior: float = 0.01):
        super().__init__()
        self.cls_branch = nn.ModuleList(nn.Sequential(DWSep(width, width), DWSep(width, width)) for _ in range(levels))
        self.box_branch = nn.ModuleList(nn.Sequential(DWSep(width, width), DWSep(width, width)) for _ in range(levels))
        self.cls_out = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in range(levels))
        self.box_out = nn.ModuleList(nn.Conv2d(width, 4, 1) for _ in range(levels))
        bias = -math.log((1 - cls_prior) / cls_prior)  # RetinaNet prior: early training is not swamped
        for conv in self.cls_out:
            nn.init.constant_(conv.bias, bias)
        for conv in self.box_out:
            # softplus(0.55) ~ 1 stride: initial boxes one cell wide on every side
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, 0.55)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cls_maps = [out(branch(x)) for branch, out, x in zip(self.cls_branch, self.cls_out, feats, strict=True)]
        box_maps = [out(branch(x)) for branch, out, x in zip(self.box_branch, self.box_out, feats, strict=True)]
        return cls_maps, box_maps


class MultiTaskNet(nn.Module):
    """Shared smp encoder, U-Net segmentation head, PAN neck + decoupled anchor-free detection head.

    Args:
        encoder: smp encoder name (e.g. "timm-tf_efficientnet_lite0", "mobilenet_v2", "tu-mobilenetv4_conv_small").
        num_seg_classes: S (background, drivable, lane by default).
        num_det_classes: C.
        seg_width: U-Net decoder channels (see ``UNetSegHead``).
        seg_out_stride: stride the decoder stops at (2, 4 or 8).
        det_width: neck and head channels.
        cls_prior: initial class probability of the detection head.
    Input: float [N, 3, H, W], normalised RGB, H and W multiples of 32. Output: ``MultiTaskOutput``.
    """

    strides = DET_STRIDES

    def __init__(
        self,
        encoder: str = "timm-tf_efficientnet_lite0",
        num_seg_classes: int = 3,
        num_det_classes: int = 4,
        seg_width: int = 32,
        seg_out_stride: int = 4,
        det_width: int = 64,
        cls_prior: float = 0.01,
    ):
        super().__init__()
        self.encoder, ch = build_encoder(encoder)
        self.seg_head = UNetSegHead(ch, num_seg_classes, seg_width, seg_out_stride)
        self.neck = PANNeck(ch[3:6], det_width)
        self.det_head = DecoupledHead(det_width, num_det_classes, len(self.strides), cls_prior)

    def forward(self, x: torch.Tensor) -> MultiTaskOutput:
        feats = self.encoder(x)
        seg = self.seg_head(feats, x.shape[-2:])
        cls_maps, box_maps = self.det_head(self.neck(feats[3:6]))
        return MultiTaskOutput(seg, cls_maps, box_maps)


class SeparateNets(nn.Module):
    """Comparison mode: smp's stock U-Net for segmentation and a standalone detector, no shared weights.

    The detector is this module's encoder + PAN neck + decoupled head on its own encoder, so the only
    difference from ``MultiTaskNet`` is the sharing. Same input and output contract.
    """

    strides = DET_STRIDES

    def __init__(
        self,
        encoder: str = "timm-tf_efficientnet_lite0",
        det_encoder: str | None = None,
        num_seg_classes: int = 3,
        num_det_classes: int = 4,
        seg_decoder_channels: Sequence[int] = (64, 48, 32, 24, 16),
        det_width: int = 64,
        cls_prior: float = 0.01,
    ):
        super().__init__()
        import segmentation_models_pytorch as smp

        self.segmenter = smp.Unet(
            encoder,
            encoder_weights=None,
            classes=num_seg_classes,
            decoder_channels=tuple(seg_decoder_channels),
        )
        self.det_encoder, ch = build_encoder(det_encoder or encoder)
        self.neck = PANNeck(ch[3:6], det_width)
        self.det_head = DecoupledHead(det_width, num_det_classes, len(self.strides), cls_prior)

    def forward(self, x: torch.Tensor) -> MultiTaskOutput:
        seg = self.segmenter(x)
        cls_maps, box_maps = self.det_head(self.neck(self.det_encoder(x)[3:6]))
        return MultiTaskOutput(seg, cls_maps, box_maps)
