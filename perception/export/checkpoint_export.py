"""``perception export CHECKPOINT``: a training checkpoint → fused ONNX file, checked against eager PyTorch.

The check runs the same frames through two pipelines, the ONNX file under ONNX Runtime and the eager
network with host decoding and NMS, and compares their outputs at stated tolerances (``PARITY``):
segmentation pixels equal, and detections matched one to one (same class, IoU, score difference).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from perception.errors import ModelError

PARITY = {"seg_agreement": 0.995, "box_iou": 0.95, "score_diff": 1e-3}


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_gflops(net: nn.Module, input_size: tuple[int, int]) -> float:
    """Multiply-adds x 2 of convolutions and linear layers for one image of ``input_size`` (H, W), in G.

    Counted with forward hooks (every Conv2d/Linear actually run); element-wise ops, pooling and
    resizing are left out, as in most published figures.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, *input_size))
    net.train(was_training)
    for h in hooks:
        h.remove()
    return 2 * total / 1e9


def load_net(path: str | os.PathLike):
    """(network in eval mode, contract, arch, arch_kwargs, checkpoint dict) from a checkpoint file."""
    from perception.runtime.contract import ModelContract
    from perception.train.checkpoints import build_checkpoint_net
    from perception.train.engine import load_checkpoint

    path = Path(path)
    ckpt = load_checkpoint(path)
    if "contract" not in ckpt:
        raise ModelError(f"{path}: checkpoint has no model contract")
    contract = ModelContract.from_dict(ckpt["contract"], str(path))
    net = build_checkpoint_net(ckpt, path)
    return net.eval(), contract, ckpt["arch"], ckpt["arch_kwargs"], ckpt


def check_frames_from(source: str | None, input_size: tuple[int, int], n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """BGR frames for the parity check: the first ``n`` of a video or image folder, else seeded noise
    blurred into blobs (pure noise gives no confident detections, so it would test NMS poorly)."""
    import cv2

    if source:
        from perception.sources import BadFrame, open_source

        frames = []
        src = open_source(source)
        try:
            for frame in src:
                if not isinstance(frame, BadFrame):
                    frames.append(frame.image)
                if len(frames) >= n:
                    break
        finally:
            src.close()
        if not frames:
            raise ModelError(f"{source}: no frames to check the export with")
        return frames
    rng = np.random.default_rng(seed)
    h, w = input_size
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        out.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


@dataclass
class ParityReport:
    frames: int
    seg_agreement: float  # fraction of pixels equal, over all frames
    dets_onnx: int
    dets_torch: int
    matched: int
    worst_iou: float
    worst_score_diff: float

    @property
    def ok(self) -> bool:
        return (
            self.seg_agreement >= PARITY["seg_agreement"]
            and self.dets_onnx == self.dets_torch == self.matched
            and (
                self.matched == 0
                or (self.worst_iou >= PARITY["box_iou"] and self.worst_score_diff <= PARITY["score_diff"])
            )
        )

    def __str__(self) -> str:
        return (
            f"parity over {self.frames} frames: seg pixels equal {self.seg_agreement:.5f} "
            f"(>= {PARITY['seg_agreement']}); detections onnx {self.dets_onnx} / torch {self.dets_torch}, "
            f"matched {self.matched} (IoU >= {PARITY['box_iou']}, worst {self.worst_iou:.4f}; "
            f"score diff <= {PARITY['score_diff']}, worst {self.worst_score_diff:.2e}): "
            + ("OK" if self.ok else "FAILED")
        )


def check_parity(onnx_path: str | os.PathLike, net: nn.Module, contract, frames: list[np.ndarray]) -> ParityReport:
    """Run ``frames`` through the exported file (ONNX Runtime) and the eager net (host decode + NMS)."""
    from perception.config import PipelineConfig
    from perception.pipeline import Pipeline, build_pipeline
    from perception.postprocess.nms import box_iou
    from perception.postprocess.outputs import DetectionSettings
    from perception.preprocess import Preprocessor
    from perception.runtime.torch_backend import TorchBackend
    from perception.types import Frame

    onnx_pipe = build_pipeline(PipelineConfig(model=str(onnx_path)))
    backend = TorchBackend.from_net(net, contract)
    fused = onnx_pipe.contract
    settings = DetectionSettings.from_contract(
        backend.contract, fused.score_threshold, fused.iou_threshold, fused.max_dets, False
    )
    pre = Preprocessor(input_size=contract.input_size, color=contract.color, pad_value=contract.pad_value)
    torch_pipe = Pipeline(backend, pre, settings)
    equal = total = 0
    n_onnx = n_torch = matched = 0
    worst_iou, worst_diff = 1.0, 0.0
    for i, image in enumerate(frames):
        frame = Frame(index=i, timestamp_s=0.0, image=image)
        a, b = onnx_pipe(frame), torch_pipe(frame)
        equal += int((a.seg.class_ids == b.seg.class_ids).sum())
        total += a.seg.class_ids.size
        da, db = a.detections, b.detections
        n_onnx += len(da)
        n_torch += len(db)
        if len(da) and len(db):
            iou = box_iou(np.asarray(da.boxes_xyxy), np.asarray(db.boxes_xyxy))
            iou[np.asarray(da.labels)[:, None] != np.asarray(db.labels)[None, :]] = 0
            used = set()
            for r in np.argsort(-np.asarray(da.scores)):
                c = int(np.argmax(np.where(np.isin(np.arange(len(db)), list(used)), -1, iou[r])))
                if iou[r, c] >= PARITY["box_iou"] and c not in used:
                    used.add(c)
                    matched += 1
                    worst_iou = min(worst_iou, float(iou[r, c]))
                    worst_diff = max(worst_diff, abs(float(da.scores[r]) - float(db.scores[c])))
    return ParityReport(len(frames), equal / max(total, 1), n_onnx, n_torch, matched, worst_iou, worst_diff)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    score_threshold: float = 0.25,
    check_frames: str | None = None,
    name: str | None = None,
) -> str:
    """Export ``checkpoint`` to fused ONNX at ``out``, check parity, and return a report (text).

    Raises ModelError when the parity check fails (the file is still written, for inspection).
    """
    from perception.export.onnx_export import export_onnx

    net, contract, _, _, _ = load_net(checkpoint)
    contract = dataclasses.replace(
        contract, format="fused", score_threshold=float(score_threshold), name=name or contract.name
    )
    path = export_onnx(net, contract, out)
    report = check_parity(path, net, contract, check_frames_from(check_frames, contract.input_size))
    size_mb = path.stat().st_size / 1e6
    text = (
        f"wrote {path} ({size_mb:.2f} MB): {contract.name}, input {contract.input_size[0]}x{contract.input_size[1]}, "
        f"{count_params(net) / 1e6:.2f} M parameters, {count_gflops(net, contract.input_size):.2f} GFLOPs\n{report}"
    )
    if not report.ok:
        raise ModelError(f"{path}: export does not match eager PyTorch\n{text}")
    return text
