"""PyTorch networks (training and export only; the runtime never imports this package).

Networks take a normalised float tensor [N, 3, H, W] and return raw tensors (``MultiTaskOutput``);
decoding, NMS and losses live outside ``forward``. ``build_net`` is the one registry of architectures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from perception.nets.multitask import MultiTaskNet, SeparateNets
from perception.nets.tiny import TinyMultiTaskNet
from perception.nets.yolox import YoloxMultiTaskNet

NETS: dict[str, Callable[..., nn.Module]] = {
    "tiny": TinyMultiTaskNet,
    "multitask": MultiTaskNet,
    "separate": SeparateNets,
    "yolox_nano": YoloxMultiTaskNet,
}


def build_net(arch: str, **kwargs: Any) -> nn.Module:
    """Build a registered network by name; an unknown name raises with the valid names."""
    if arch not in NETS:
        raise ValueError(f"unknown network {arch!r}; valid names: {sorted(NETS)}")
    return NETS[arch](**kwargs)
