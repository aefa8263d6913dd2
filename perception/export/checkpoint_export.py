"""``perception export CHECKPOINT``: a training checkpoint → fused ONNX file, checked against eager PyTorch.

The check runs the same frames through two pipelines, the ONNX file under ONNX Runtime and the eager
network with host decoding and NMS, and compares their outputs at stated tolerances (``PARITY``):
segmentation pixels equal, and detections matched one to one (same class, IoU, score difference).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
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
    from perception.nets.checkpoints import build_checkpoint_net
    from perception.runtime.contract import ModelContract
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


def _float_pixel_backend():
    from perception.runtime.torch_backend import TorchBackend

    class FloatPixelTorchBackend(TorchBackend):
        """The eager network fed float pixels, as a whole-frame graph's letterbox hands them over."""

        def check_images(self, images: np.ndarray) -> None:
            h, w = self.contract.input_size
            if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
                raise ValueError(f"images must be float32 [N, {h}, {w}, 3], got {images.dtype} {list(images.shape)}")

    return FloatPixelTorchBackend


class _EagerGraphLetterbox:
    """A whole-frame graph's letterbox in eager PyTorch (bilinear, half-pixel, padded, float pixels): the
    reference its export is held to. OpenCV's fixed-point uint8 resize differs from it by up to one grey
    level, enough to move scores by ~1e-2 on a trained model, so it is no reference for parity."""

    def __init__(self, contract):
        from perception.preprocess import letterbox_geometry

        self.input_size = tuple(contract.input_size)
        self.undistort, self.roi_xywh = False, None
        self.color, self.pad_value = contract.color, contract.pad_value
        self.letterbox = letterbox_geometry(contract.frame_size, contract.input_size, None, contract.align)

    def __call__(self, frame) -> tuple[np.ndarray, object]:
        import cv2
        import torch.nn.functional as F

        lb = self.letterbox
        ch, cw = lb.content_hw
        image = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB) if self.color == "RGB" else frame.image
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(ch, cw), mode="bilinear", align_corners=False)
        out = np.full((*self.input_size, 3), self.pad_value, np.float32)
        out[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw] = x[0].permute(1, 2, 0).numpy()
        return out, lb


def check_parity(onnx_path: str | os.PathLike, net: nn.Module, contract, frames: list[np.ndarray]) -> ParityReport:
    """Run ``frames`` through the exported file (ONNX Runtime) and the eager net (host decode + NMS)."""
    from perception.config import FusionConfig, PipelineConfig
    from perception.frames import Frame
    from perception.pipeline import Pipeline, build_pipeline
    from perception.postprocess.network_outputs import DetectionSettings
    from perception.postprocess.nms import box_iou
    from perception.preprocess import Preprocessor
    from perception.runtime.torch_backend import TorchBackend

    onnx_pipe = build_pipeline(PipelineConfig(model=str(onnx_path), fusion=FusionConfig(enabled=False)))
    onnx_pipe.keep_whole_ranking()  # every box the graph keeps is compared
    # The eager reference sees each frame letterboxed as the exported graph letterboxes it.
    whole_frame = contract.frame_size is not None
    backend_cls = _float_pixel_backend() if whole_frame else TorchBackend
    backend = backend_cls.from_net(net, dataclasses.replace(contract, frame_size=None))
    fused = onnx_pipe.contract
    settings = DetectionSettings.from_contract(
        backend.contract, fused.score_threshold, fused.iou_threshold, fused.max_dets, False
    )
    if whole_frame:
        pre = _EagerGraphLetterbox(contract)
    else:
        pre = Preprocessor(
            input_size=contract.input_size, color=contract.color, pad_value=contract.pad_value, align=contract.align
        )
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


FORMATS = ("onnx", "onnx-raw", "onnx-int8", "tensorrt")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    score_threshold: float = 0.25,
    check_frames: str | None = None,
    name: str | None = None,
    *,
    format: str = "onnx",
    frame_size: tuple[int, int] | None = None,
    calib: str | None = None,
    calib_frames: int = 300,
    calib_method: str = "entropy",
    int8_float: tuple[str, ...] | None = None,
    precision: str = "fp16",
    max_batch: int = 8,
    display_score: float | None = None,
    provenance: str | os.PathLike | None = None,
) -> str:
    """Export ``checkpoint`` to ``out`` in ``format``, check it, and return a report (text).

    - ``onnx``: fused ONNX (pre-processing, argmax, decoding and NMS in the graph), checked against eager
      PyTorch + host NMS at the ``PARITY`` tolerances.
    - ``onnx-raw``: the network and argmax only; the host decodes and runs NMS. Same check.
    - ``onnx-int8``: the fused ONNX, then ONNX Runtime static quantization (QDQ) calibrated on
      ``calib_frames`` frames of ``calib`` (dataset spec, video or image folder); the report gives its
      agreement with the FP32 file, since INT8 is not expected to meet the FP32 parity tolerances.
      ``int8_float``: module paths left float (default: the network's ``int8_float_modules``; ``()``
      quantizes everything); a path that names no module of the network is refused.
    - ``tensorrt``: a TensorRT engine (``precision`` fp16/int8/fp32, INT8 calibrated on ``calib``) with
      the EfficientNMS plugin; needs an NVIDIA GPU and the ``tensorrt`` extra.

    ``frame_size`` (H, W): whole-frame variant, the graph letterboxes camera frames of that size itself.
    ``display_score``: the host's default threshold (contract ``thresholds.display_score``) when
    ``score_threshold`` is set low to keep the whole ranking for mAP.
    ``provenance``: a YAML file (``provenance.load_provenance``) naming the model's init weights, teachers and
    datasets with their licences, stored in the contract as ``extra["provenance"]`` in every format.
    Raises ConfigError for a bad provenance file (before anything is written), ModelError when a check fails
    (the file is still written, for inspection).
    """
    if format not in FORMATS:
        raise ModelError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if format == "onnx-raw" and frame_size is not None:
        raise ModelError("--frame-size needs a fused format (onnx, onnx-int8, tensorrt), not onnx-raw")
    if format in ("onnx-int8",) and not calib:
        raise ModelError(f"format {format} needs calibration frames: --calib DATASET_SPEC|VIDEO|IMAGE_DIR")
    extra = {}
    if provenance is not None:
        from perception.export.provenance import load_provenance

        extra["provenance"] = load_provenance(provenance)
    net, contract, _, _, _ = load_net(checkpoint)
    unknown = sorted(set(int8_float or ()) - {n for n, _ in net.named_modules()})
    if unknown:
        raise ModelError(f"--int8-float: {', '.join(unknown)} name no module of {checkpoint}")
    fused = dataclasses.replace(
        contract,
        format="raw" if format == "onnx-raw" else "fused",
        score_threshold=float(score_threshold),
        display_score_threshold=None if display_score is None else float(display_score),
        name=name or contract.name,
        frame_size=tuple(frame_size) if frame_size else None,
        version=2 if frame_size else contract.version,
        extra={**contract.extra, **extra},
    )
    out = Path(out)
    described = (
        f"{fused.name}, input {fused.input_size[0]}x{fused.input_size[1]}"
        + (
            f" (whole {fused.frame_size[1]}x{fused.frame_size[0]} frames letterboxed in the graph)"
            if frame_size
            else ""
        )
        + f", {count_params(net) / 1e6:.2f} M parameters, {count_gflops(net, fused.input_size):.2f} GFLOPs"
        + (f"; provenance from {provenance}" if provenance is not None else "")
    )
    frames = check_frames_from(check_frames, fused.graph_input_size)
    if format == "tensorrt":
        from perception.export.tensorrt_build import build_engine, trt_onnx
        from perception.runtime.tensorrt_backend import import_tensorrt

        import_tensorrt()  # the install hint before anything is written
        onnx_path = trt_onnx(net, fused, out.with_suffix(".trt.onnx"))
        calib_images = _calibration_images(calib, fused, calib_frames) if precision == "int8" else None
        engine = build_engine(onnx_path, out, precision=precision, calib_frames=calib_images, max_batch=max_batch)
        return f"wrote {engine} (TensorRT {precision}): {described}"
    if format != "onnx-int8":
        return _export_checked(net, fused, out, frames, described)
    from perception.export.quantize import compare_outputs, quantize_model
    from perception.preprocess import Preprocessor

    images = _calibration_images(calib, fused, calib_frames)
    with tempfile.TemporaryDirectory(prefix="perception-int8-") as tmp:  # the FP32 step is not a product
        fp32 = Path(tmp) / "fp32.onnx"
        text = _export_checked(net, fused, fp32, frames, described)
        keep_float = tuple(getattr(net, "int8_float_modules", ())) if int8_float is None else tuple(int8_float)
        int8 = quantize_model(fp32, out, images, method=calib_method, keep_float=keep_float)
        pre = Preprocessor(fused.graph_input_size, fused.color, fused.pad_value, fused.align)
        agreement = compare_outputs(fp32, int8, [pre(f)[0] for f in frames])
    return text.replace(f"wrote {fp32}", "FP32 graph") + (
        f"\nwrote {int8} ({int8.stat().st_size / 1e6:.2f} MB): INT8 QDQ, {calib_method} calibration on "
        f"{len(images)} frames of {calib}; against FP32 on the check frames: "
        + ", ".join(f"{k} {v}" for k, v in agreement.items())
    )


def _export_checked(net: nn.Module, contract, path: Path, frames: list[np.ndarray], described: str) -> str:
    """Fused or raw ONNX at ``path``, checked against eager PyTorch; ModelError when parity fails."""
    from perception.export.onnx_export import export_onnx

    path = export_onnx(net, contract, path)
    report = check_parity(path, net, contract, frames)
    text = f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {described}\n{report}"
    if not report.ok:
        raise ModelError(f"{path}: export does not match eager PyTorch\n{text}")
    return text


def _calibration_images(source: str | None, contract, n: int) -> list[np.ndarray]:
    if not source:
        raise ModelError("INT8 needs calibration frames: --calib DATASET_SPEC|VIDEO|IMAGE_DIR")
    from perception.export.quantize import calibration_frames

    return calibration_frames(source, contract, n)
