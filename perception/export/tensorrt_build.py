"""Build TensorRT engines that speak the fused model contract.

Two steps, because only the second needs a GPU:

1. ``trt_onnx``: the fused graph (in-graph preprocessing, network, box decoding; traced as
   ``onnx_export`` does) with NMS done by TensorRT's ``EfficientNMS_TRT`` plugin instead of ONNX
   ``NonMaxSuppression``, whose data-dependent output and index gymnastics TensorRT runs poorly. A few
   ONNX ops after the plugin turn its four outputs into the contract's ``dets`` [N, K, 6] and
   ``num_dets`` [N], so an engine is a drop-in for the fused ONNX file. TensorRT's ONNX parser imports a
   node whose op type it has no importer for as a plugin of the same name from the plugin registry,
   with the node's attributes as plugin fields and its ``plugin_version`` (default "1") and
   ``plugin_namespace`` (default "") attributes selecting the creator; the domain ("TRT" here) is
   ignored by TensorRT and keeps ONNX tools from mistaking the node for a standard op.
2. ``build_engine``: TensorRT 10 builder with a dynamic-batch profile, FP16 or INT8 (entropy
   calibration on real frames), and a timing cache reused across builds. It writes the engine and its
   contract as ``<engine>.contract.json``, since engine files have no metadata of their own.

TensorRT 11 removed the FP16/INT8 builder flags and calibrators (strongly typed networks only); this
module targets TensorRT 10 and says so when it finds another version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper

from perception.errors import ModelError
from perception.export.onnx_export import const_node, dets_to_frame, prepend_letterbox, trace_to_onnx
from perception.nets.contract_graph import IMAGENET_MEAN, IMAGENET_STD, DecodedGraph
from perception.runtime.contract import METADATA_KEY, ModelContract
from perception.runtime.tensorrt_backend import Cuda, contract_path_for, import_tensorrt

PRECISIONS = ("fp32", "fp16", "int8")
PLUGIN_OP = "EfficientNMS_TRT"
PLUGIN_DOMAIN = "TRT"
PLUGIN_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
# The tensors the plugin reads: boxes [N, A, 4] x1y1x2y2 and scores transposed to [N, A, C].
PLUGIN_INPUTS = ("boxes", "scores_nac")


class _FloatInput(nn.Module):
    """Casts the uint8 frames to float before ``DecodedGraph`` changes their layout.

    TensorRT converts uint8 only to and from float32/float16, so the transpose (and colour flip) must
    run on floats; the values are the same either way.
    """

    def __init__(self, graph: DecodedGraph):
        super().__init__()
        self.graph = graph

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.graph(images.float())


def _uint8_casts_via_float(graph: onnx.GraphProto) -> None:
    """Put a Cast to float in front of every Cast to uint8 (the seg argmax is int64; see _FloatInput)."""
    nodes = []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == TensorProto.UINT8:
            via = f"{node.input[0]}_as_float"
            nodes.append(helper.make_node("Cast", [node.input[0]], [via], to=TensorProto.FLOAT))
            node.input[0] = via
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _append_efficient_nms(model: onnx.ModelProto, contract: ModelContract) -> onnx.ModelProto:
    """Outputs (seg, boxes [N,A,4], scores [N,C,A]) → (seg, dets [N,K,6], num_dets [N]) via EfficientNMS_TRT.

    Class-aware NMS like the fused export (``class_agnostic`` 0), scores already sigmoid
    (``score_activation`` 0), corner boxes (``box_coding`` 0), no background class. Rows past
    ``num_detections`` are set to zero explicitly: the contract promises zero padding, the plugin only
    that those rows are invalid.
    """
    g = model.graph
    k = contract.max_dets
    g.node.extend(
        [
            helper.make_node("Transpose", ["scores"], ["scores_nac"], perm=[0, 2, 1]),
            helper.make_node(
                PLUGIN_OP,
                list(PLUGIN_INPUTS),
                list(PLUGIN_OUTPUTS),
                name="efficient_nms",
                domain=PLUGIN_DOMAIN,
                plugin_version="1",
                background_class=-1,
                box_coding=0,
                class_agnostic=0,
                iou_threshold=float(contract.iou_threshold),
                max_output_boxes=k,
                score_activation=0,
                score_threshold=float(contract.score_threshold),
            ),
            const_node("trt_rank", np.arange(k, dtype=np.int32).reshape(1, k)),
            const_node("trt_ax1", np.array([1], np.int64)),
            const_node("trt_ax2", np.array([2], np.int64)),
            const_node("trt_zero", np.array(0.0, np.float32)),
            helper.make_node("Less", ["trt_rank", "num_detections"], ["trt_valid"]),  # [N, K]
            helper.make_node("Unsqueeze", ["trt_valid", "trt_ax2"], ["trt_valid3"]),
            helper.make_node("Unsqueeze", ["detection_scores", "trt_ax2"], ["trt_scores3"]),
            helper.make_node("Cast", ["detection_classes"], ["trt_classes_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["trt_classes_f", "trt_ax2"], ["trt_classes3"]),
            helper.make_node("Concat", ["detection_boxes", "trt_scores3", "trt_classes3"], ["trt_rows"], axis=2),
            helper.make_node("Where", ["trt_valid3", "trt_rows", "trt_zero"], ["dets"]),
            helper.make_node("Squeeze", ["num_detections", "trt_ax1"], ["num_dets"]),
        ]
    )
    # ONNX shape inference cannot see through the plugin; declare its outputs so the tail is typed.
    g.value_info.extend(
        [
            helper.make_tensor_value_info("num_detections", TensorProto.INT32, ["N", 1]),
            helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, ["N", k, 4]),
            helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("detection_classes", TensorProto.INT32, ["N", k]),
        ]
    )
    seg_out = [o for o in g.output if o.name == "seg"]
    del g.output[:]
    g.output.extend(seg_out)
    g.output.append(helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["N", k, 6]))
    g.output.append(helper.make_tensor_value_info("num_dets", TensorProto.INT32, ["N"]))
    model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return model


def check_trt_onnx(model: onnx.ModelProto) -> None:
    """Validate everything ONNX can know about a TensorRT-flavoured graph.

    ``onnx.checker`` checks every standard node against its schema and skips the plugin node, whose
    "TRT" domain it has no schemas for; strict shape inference then types the whole graph, the plugin's
    outputs from their declared value_info, and fails on any inconsistency in the ops around it.
    """
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def trt_onnx(
    net: nn.Module,
    contract: ModelContract,
    path: str | os.PathLike,
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Path:
    """Write the TensorRT-flavoured fused graph of ``net`` to ``path`` and return the path.

    Same inputs, outputs and metadata (contract JSON under ``perception.contract``) as
    ``export_onnx(net, contract, path)`` in format "fused", with ``EfficientNMS_TRT`` doing the NMS.
    ONNX Runtime cannot run the file (it lacks the plugin); ``build_engine`` turns it into an engine.
    """
    if contract.format != "fused":
        raise ValueError(f"TensorRT engines speak the fused contract, got format {contract.format!r}")
    path = Path(path)
    h, w = contract.input_size
    decoded = DecodedGraph(
        net.eval(), contract.input_size, contract.strides, contract.color, mean, std, contract.box_encoding
    )
    names = ["seg", "boxes", "scores"]
    with torch.no_grad():
        model = trace_to_onnx(
            _FloatInput(decoded).eval(),
            torch.zeros(1, h, w, 3, dtype=torch.uint8),
            names,
            {n: {0: "N"} for n in names},
        )
    _uint8_casts_via_float(model.graph)
    model = _append_efficient_nms(model, contract)
    if contract.frame_size is not None:  # whole-frame engine: camera frame in, frame-pixel dets out
        model = dets_to_frame(prepend_letterbox(model, contract), contract)
    for out in model.graph.output:  # the tracer names dynamic dims after ops; state the fixed ones
        if out.name == "seg":
            dims = out.type.tensor_type.shape.dim
            dims[1].dim_value, dims[2].dim_value = h, w
    contract = replace(contract, extra={**contract.extra, "normalize": {"mean": list(mean), "std": list(std)}})
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    check_trt_onnx(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_contract(path: str | os.PathLike) -> ModelContract:
    """The contract in an ONNX file's metadata; ModelError naming the file when it has none."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError, OSError: either way the file is not usable
        raise ModelError(f"{path}: cannot read as ONNX ({err})") from err
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ModelError(f"{path}: no '{METADATA_KEY}' metadata; make the file with trt_onnx")
    return ModelContract.from_json(meta[METADATA_KEY], str(path))


@dataclass(frozen=True)
class EngineBuild:
    """What ``build_engine`` wrote and how long it took."""

    engine: Path
    contract: Path
    precision: str
    seconds: float
    timing_cache: Path | None
    timing_cache_reused_bytes: int  # size of the timing cache loaded from an earlier build, 0 if none
    calibration_cache: Path | None


def _write_atomic(path: Path, data: Any) -> None:
    # A build takes minutes; never leave a half-written engine or cache for the next run to load.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _calibration_frames(frames: Sequence[np.ndarray] | np.ndarray, contract: ModelContract) -> np.ndarray:
    batch = np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames)
    h, w = contract.input_size
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (h, w, 3) or len(batch) == 0:
        raise ValueError(
            f"calibration frames must be uint8 [H={h}, W={w}, 3] letterboxed in {contract.color} order, "
            f"got {batch.dtype} {list(batch.shape)}"
        )
    return batch


def _entropy_calibrator(trt: Any, cuda: Cuda, frames: np.ndarray | None, batch: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``frames`` in batches of ``batch`` (a partial last batch is
    dropped: the calibration profile fixes the batch size). With ``frames`` None it only replays
    ``cache``; TensorRT reads the cache first and skips calibration when it is there."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.next = 0
            self.ptr = cuda.malloc(frames[:batch].nbytes) if frames is not None else None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if frames is None or self.next + batch > len(frames):
                return None
            cuda.to_device(self.ptr, frames[self.next : self.next + batch])
            cuda.sync()
            self.next += batch
            return [self.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            _write_atomic(cache, data)

        def free(self) -> None:
            if self.ptr is not None:
                cuda.free(self.ptr)
                self.ptr = None

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    precision: str = "fp16",
    calib_frames: Sequence[np.ndarray] | np.ndarray | None = None,
    timing_cache: str | os.PathLike | None = None,
    workspace_gb: float = 4.0,
    max_batch: int = 8,
    device: int = 0,
) -> EngineBuild:
    """Build a TensorRT engine from a ``trt_onnx`` file; write it, its contract sidecar and the caches.

    Args:
        precision: "fp32", "fp16", or "int8" (INT8 where calibrated, FP16 elsewhere).
        calib_frames: INT8 only: uint8 [H, W, 3] frames at the network input size, letterboxed, in the
            contract's colour order (a few hundred from the deployment camera). Not needed when
            ``<engine>.calib.cache`` exists from an earlier build: its scales are reused.
        timing_cache: file of measured kernel timings, loaded when present and saved after the build,
            so rebuilds on the same GPU and TensorRT version skip most tactic timing.
        workspace_gb: builder scratch memory limit.
        max_batch: largest batch the engine accepts (optimisation profile min 1, opt 1, max this).
        device: CUDA device to build on (engines run on the GPU model they were built for).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    contract = onnx_contract(onnx_path)
    frames = _calibration_frames(calib_frames, contract) if calib_frames is not None else None
    calib_cache = Path(f"{engine_path}.calib.cache")
    if precision == "int8" and frames is None and not calib_cache.is_file():
        raise ModelError(f"{engine_path}: int8 needs calibration frames or an existing {calib_cache.name}")
    trt = import_tensorrt()
    cuda = Cuda(device)
    if precision != "fp32" and not hasattr(trt.BuilderFlag, precision.upper()):
        raise ModelError(
            f"tensorrt {trt.__version__} has no BuilderFlag.{precision.upper()} (TensorRT 11 builds strongly "
            f"typed networks only); install tensorrt 10.x for {precision} engines"
        )

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # registers EfficientNMS_TRT for the parser
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    h, w = contract.input_size
    profile = builder.create_optimization_profile()
    profile.set_shape(contract.input_name, (1, h, w, 3), (1, h, w, 3), (max_batch, h, w, 3))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers without INT8 kernels fall back to FP16
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        batch = min(8, max_batch, len(frames)) if frames is not None else 1
        calibrator = _entropy_calibrator(trt, cuda, frames, batch, calib_cache)
        config.int8_calibrator = calibrator
        # Calibration runs the network at one fixed batch size, given by its own profile.
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(contract.input_name, *[(batch, h, w, 3)] * 3)
        config.set_calibration_profile(calib_profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    reused = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    if cache_path is not None:
        # ignore_mismatch False: a cache from another GPU or TensorRT version is discarded, not trusted.
        config.set_timing_cache(config.create_timing_cache(reused), False)

    start = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ModelError(f"{onnx_path}: TensorRT could not build a {precision} engine (see its log above)")

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, serialized)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(cache_path, config.get_timing_cache().serialize())
    built = replace(
        contract,
        name=f"{contract.name}-trt-{precision}",
        extra={
            **contract.extra,
            "tensorrt": {
                "version": trt.__version__,
                "precision": precision,
                "max_batch": max_batch,
                "built_on": cuda.device_name,
            },
        },
    )
    sidecar = contract_path_for(engine_path)
    _write_atomic(sidecar, built.to_json().encode())
    return EngineBuild(
        engine=engine_path,
        contract=sidecar,
        precision=precision,
        seconds=seconds,
        timing_cache=cache_path,
        timing_cache_reused_bytes=len(reused),
        calibration_cache=calib_cache if precision == "int8" else None,
    )
