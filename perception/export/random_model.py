"""A tiny multi-task model with random weights that satisfies the model contract.

It exists so the whole runtime path (export, contract checks, backends, NMS, runner, sinks) runs before a
trained model does: tests build one in a temporary folder, and ``models/placeholder-random.onnx`` is
one. Its outputs carry no meaning.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import torch

from perception.export.onnx_export import export_onnx
from perception.nets import build_net
from perception.runtime.contract import ModelContract

SEG_CLASSES = ("background", "drivable", "lane")
DET_CLASSES = ("car", "pedestrian", "cyclist", "traffic_sign")


def random_net_and_contract(
    *,
    format: str = "fused",
    input_size: tuple[int, int] = (384, 640),
    seed: int = 0,
    cls_prior: float = 0.01,
    width: int = 8,
    max_dets: int = 100,
    score_threshold: float = 0.25,
) -> tuple[torch.nn.Module, ModelContract, dict]:
    """(network, contract, arch_kwargs) for the tiny network with seeded random weights."""
    torch.manual_seed(seed)
    arch_kwargs = {
        "num_seg_classes": len(SEG_CLASSES),
        "num_det_classes": len(DET_CLASSES),
        "width": width,
        "cls_prior": cls_prior,
    }
    net = build_net("tiny", **arch_kwargs).eval()
    contract = ModelContract(
        input_size=input_size,
        seg_classes=SEG_CLASSES,
        det_classes=DET_CLASSES,
        format=format,
        name=f"tiny-random-seed{seed}",
        max_dets=max_dets,
        score_threshold=score_threshold,
        trained_on=("nothing: random weights",),
        created=dt.date.today().isoformat(),
    )
    return net, contract, arch_kwargs


def make_random_model(path: str | os.PathLike, **kwargs) -> Path:
    """Export a random tiny model to ``path`` (.onnx); kwargs as for ``random_net_and_contract``."""
    net, contract, _ = random_net_and_contract(**kwargs)
    return export_onnx(net, contract, path)
