"""Box encodings of the detection head in torch (the loss and the exported graph), beside their numpy twins
in ``perception.postprocess.decode.BOX_ENCODINGS``, which the host decoder uses; a test holds them equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from perception.postprocess.decode import MAX_LOG_SIZE


def _ltrb_softplus(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw)


def _yolox_xywh(raw: torch.Tensor) -> torch.Tensor:
    d = raw[..., :2]
    half = torch.exp(raw[..., 2:].clamp(max=MAX_LOG_SIZE)) / 2
    return torch.cat([0.5 - d + half, d - 0.5 + half], -1)


TORCH_BOX_ENCODINGS = {"ltrb_softplus": _ltrb_softplus, "yolox_xywh": _yolox_xywh}


def decode_boxes(raw: torch.Tensor, centers: torch.Tensor, strides: torch.Tensor, encoding: str) -> torch.Tensor:
    """Raw box channels → boxes.

    Args:
        raw: float [..., A, 4], the head's box channels, channels last.
        centers: float [A, 2], anchor (cell centre) x, y in input pixels.
        strides: float [A], each anchor's stride.
        encoding: a name in ``TORCH_BOX_ENCODINGS`` (the network's ``box_encoding``).
    Returns:
        float [..., A, 4] x1, y1, x2, y2 in input pixels.
    """
    if encoding not in TORCH_BOX_ENCODINGS:
        raise ValueError(f"unknown box encoding {encoding!r}; valid: {sorted(TORCH_BOX_ENCODINGS)}")
    dist = TORCH_BOX_ENCODINGS[encoding](raw) * strides[:, None]
    return torch.cat([centers - dist[..., :2], centers + dist[..., 2:]], -1)


def box_encoding_of(net: torch.nn.Module) -> str:
    """The box encoding a network's head produces (``ltrb_softplus`` unless it says otherwise)."""
    return getattr(net, "box_encoding", "ltrb_softplus")
