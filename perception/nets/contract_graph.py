"""Wrap a network so it speaks the model contract: uint8 BGR NHWC in, contract outputs out.

Used by the exporter (the graph that goes into the ONNX file) and by the PyTorch backend (so an
unexported checkpoint behaves exactly like its export). Cast, colour swap, normalisation and layout
change happen here, inside the graph, so the host only letterboxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from perception.nets.box_coding import TORCH_BOX_ENCODINGS, decode_boxes
from perception.postprocess.decode import anchor_centers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """uint8 [N, H, W, 3] in ``input_color`` order → float [N, 3, H, W] RGB, (x/255 - mean) / std."""

    def __init__(
        self, input_color: str = "BGR", mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ):
        super().__init__()
        self.swap = input_color == "BGR"
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)), persistent=False)
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        if self.swap:
            x = x.flip(1)
        return x * self.scale - self.shift


def seg_class_ids(seg_logits: torch.Tensor) -> torch.Tensor:
    """float [N, S, H, W] → uint8 [N, H, W] argmax class ids."""
    return seg_logits.argmax(1).to(torch.uint8)


class RawGraph(nn.Module):
    """images uint8 [N,H,W,3] → (seg uint8 [N,H,W], cls_s8, box_s8, cls_s16, box_s16, ...) raw maps."""

    def __init__(self, net: nn.Module, input_color: str = "BGR", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.adapter = InputAdapter(input_color, mean, std)
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(self.adapter(images))
        maps: list[torch.Tensor] = []
        for cls_map, box_map in zip(out.cls_maps, out.box_maps, strict=True):
            maps += [cls_map, box_map]
        return (seg_class_ids(out.seg_logits), *maps)


class DecodedGraph(nn.Module):
    """images → (seg uint8 [N,H,W], boxes float [N,A,4] x1y1x2y2 input pixels, scores float [N,C,A]).

    The exporter appends ONNX NonMaxSuppression to these outputs; scores are [N, C, A] because that is
    the layout NonMaxSuppression takes. ``box_encoding`` is the contract's (``perception.nets.box_coding``).
    """

    def __init__(
        self,
        net: nn.Module,
        input_size: tuple[int, int],
        strides: Sequence[int],
        input_color: str = "BGR",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        box_encoding: str = "ltrb_softplus",
    ):
        super().__init__()
        if box_encoding not in TORCH_BOX_ENCODINGS:
            raise ValueError(f"unknown box encoding {box_encoding!r}; valid: {sorted(TORCH_BOX_ENCODINGS)}")
        self.adapter = InputAdapter(input_color, mean, std)
        self.net = net
        self.box_encoding = box_encoding
        h, w = input_size
        # The host decoder's anchors, so the graph and host decoding cannot drift apart.
        centers, per_anchor = anchor_centers([(h // s, w // s) for s in strides], strides)
        self.register_buffer("centers", torch.from_numpy(centers), persistent=False)
        self.register_buffer("anchor_strides", torch.from_numpy(per_anchor), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(self.adapter(images))
        cls = torch.cat([m.flatten(2) for m in out.cls_maps], 2)  # [N, C, A]
        raw = torch.cat([m.flatten(2) for m in out.box_maps], 2).transpose(1, 2)  # [N, A, 4]
        boxes = decode_boxes(raw, self.centers, self.anchor_strides, self.box_encoding)
        return seg_class_ids(out.seg_logits), boxes, torch.sigmoid(cls)
