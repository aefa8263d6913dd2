"""INT8 static quantization of a fused export for ONNX Runtime's CPU execution provider (QDQ format).

A fused export carries more than the network: a uint8 input cast and normalisation in front, and seg
argmax, box decoding and a NonMaxSuppression tail behind. Only the network is quantized: the nodes that
lie between its compute ops (Conv, Gemm, MatMul), found from the graph's structure rather than from
node names, and of the types in ``QUANT_OP_TYPES``. Everything before the first and after the last
compute op keeps float, so box coordinates, scores, the NMS thresholds and the argmax see the same
arithmetic as in the FP32 file.

Activation ranges come from calibration frames (``calibration_frames``: letterboxed network inputs spread
over a dataset split, a video or an image folder), run through the FP32 graph by ONNX Runtime. The result
is QuantizeLinear/DequantizeLinear pairs around the network ops (the QDQ format); ONNX Runtime fuses
them into integer kernels (QLinearConv, ...) when it loads the file. The file keeps its
``perception.contract``, renamed ``<name>-int8`` and with a ``quantization`` record, so the runtime
loads it like any other export. ``compare_outputs`` measures how far it drifts from the FP32 file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from perception.errors import InputError, ModelError
from perception.runtime.contract import METADATA_KEY, ModelContract

log = logging.getLogger(__name__)

METHODS = ("percentile", "minmax", "entropy")
# Ops that carry the network's arithmetic; quantization covers what lies between them.
COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Besides the compute ops: activations (Relu/Clip after a Conv fold into its requantisation), residual
# adds, skip concatenations and upsampling. Leaving any of them float would put a DequantizeLinear ->
# float op -> QuantizeLinear island between two integer convs.
QUANT_OP_TYPES = (*COMPUTE_OP_TYPES, "Relu", "Clip", "Add", "Mul", "Concat", "Resize", "MaxPool", "AveragePool")
# Calibration runs this many frames at a time: ONNX Runtime holds every calibrated tensor of every frame
# of a pass in memory (77 MB a frame at 288x512): one pass over 300 frames would need 23 GB.
CALIBRATION_CHUNK = 10
MATCH_IOU = 0.5


# --- calibration frames -------------------------------------------------------------------------------
def _spread(total: int, n: int, seed: int) -> list[int]:
    """``n`` of ``range(total)``: one from each of ``n`` equal stretches, at a seeded place inside it."""
    if n >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    bounds = [i * total // n for i in range(n + 1)]  # stretches are >= 1 long because n < total
    return [lo + int(rng.integers(hi - lo)) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def _dataset_spec(source: str) -> tuple[str, str] | None:
    """(kind, root) when ``source`` is a ``kind:path`` dataset spec, None for a file or folder path."""
    from perception.data.registry import parse_data_spec

    if Path(source).exists():
        return None
    kind, sep, _ = source.partition(":")
    if not sep or not kind or "/" in kind or "\\" in kind:
        return None
    return parse_data_spec(source)  # ConfigError naming the spec for an unknown kind


def _dataset_images(kind: str, root: str, split: str, n: int, seed: int) -> Iterator[np.ndarray]:
    from perception.data.registry import build_dataset

    dataset = build_dataset(kind, root, split=split)
    for i in _spread(len(dataset), n, seed):
        yield dataset[i].image


def _source_images(path: str, n: int, seed: int) -> Iterator[np.ndarray]:
    """Frames of a video or image folder at the spread positions (decoded in order: seeking is unreliable)."""
    from perception.sources import BadFrame, open_source

    src = open_source(path)
    try:
        total = src.expected_frames
        if total is None:  # the container does not say: count with a first pass
            total = sum(1 for _ in src)
            src.close()
            src = open_source(path)
        wanted = set(_spread(total, n, seed))
        last = max(wanted, default=-1)
        for frame in src:
            if frame.index > last:
                break
            if frame.index in wanted and not isinstance(frame, BadFrame):
                yield frame.image
    finally:
        src.close()


def calibration_frames(
    source: str, contract: ModelContract, n: int = 300, seed: int = 0, split: str = "train"
) -> list[np.ndarray]:
    """Network inputs for calibration: ``n`` frames spread evenly over ``source``, letterboxed per ``contract``.

    Args:
        source: a dataset spec ``KIND:PATH`` (``perception.data.registry``, e.g. ``camvid:data/camvid``), a
            video file or an image folder.
        contract: gives the size (the size the graph takes), colour order and letterbox padding.
        n: frames wanted; fewer when the source has fewer (every one is then used).
        seed: picks the frame inside each of the ``n`` equal stretches of the source; same seed, same frames.
        split: the dataset split for a dataset spec (ignored for videos and folders).
    Returns:
        uint8 [H, W, 3] arrays in the contract's colour order.
    Raises:
        InputError (DatasetError for datasets) naming the source when it is missing or yields no frames;
        ConfigError for a spec with an unknown dataset kind.
    """
    from perception.preprocess import Preprocessor

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pre = Preprocessor(contract.graph_input_size, contract.color, contract.pad_value, contract.align)
    spec = _dataset_spec(source)
    images = _dataset_images(*spec, split, n, seed) if spec else _source_images(source, n, seed)
    # Letterbox each image as it arrives so full-size frames are not all held at once.
    frames = [pre(image)[0] for image in images]
    if not frames:
        where = f" (split {split!r})" if spec else ""
        raise InputError(f"{source}{where}: no frames to calibrate with")
    return frames


# --- quantization ---------------------------------------------------------------------------------------
class _FrameReader(CalibrationDataReader):
    """Feeds frames one at a time (batch 1) to the calibration session."""

    def __init__(self, input_name: str, frames: list[np.ndarray]):
        self.input_name = input_name
        self._todo: Iterator[np.ndarray] = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._todo, None)
        return None if frame is None else {self.input_name: frame[None]}


def read_contract(path: str | os.PathLike) -> ModelContract:
    """The contract of an ONNX file; ModelError naming the file when it is missing or has none."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: all mean "not an ONNX file"
        raise ModelError(f"{path}: not an ONNX model ({type(err).__name__})") from err
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ModelError(f"{path}: no '{METADATA_KEY}' metadata; quantize a file written by `perception export`")
    return ModelContract.from_json(meta[METADATA_KEY], str(path))


def _reach(start: list[int], step: Callable[[int], list[int]]) -> set[int]:
    """Node indices reachable from ``start`` (excluded unless reached again) by repeated ``step``."""
    seen: set[int] = set()
    todo = [j for i in start for j in step(i)]
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(step(i))
    return seen


def network_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes of ``QUANT_OP_TYPES`` that are compute ops or lie on a path from one compute op to another.

    That is the network proper: the input adapter lies before the first compute op and the seg argmax,
    box decoding and NMS after the last, so none of them is returned.
    """
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers[name].append(i)
    compute = [i for i, node in enumerate(nodes) if node.op_type in COMPUTE_OP_TYPES]
    after = _reach(compute, lambda i: [j for out in nodes[i].output for j in consumers[out]])
    before = _reach(compute, lambda i: [producer[name] for name in nodes[i].input if name in producer])
    inside = (after & before) | set(compute)
    return [nodes[i] for i in sorted(inside) if nodes[i].op_type in QUANT_OP_TYPES]


def channels_last_input(graph: onnx.GraphProto, input_size: tuple[int, int]) -> bool:
    """Rewrite the exporter's input adapter so that it stays fast once ORT runs the convs channels-last.

    The adapter is uint8 NHWC -> Transpose to NCHW -> Cast -> [Slice: BGR to RGB] -> Mul, Sub by [1,3,1,1]
    constants. ORT runs integer convs channels-last and cancels the adapter's Transpose against its own,
    which leaves the Slice, Mul and Sub working on an innermost axis of 3: a slow broadcast, 14x slower
    than on planes (measured: 6 of 23 ms per 288x512 frame). Rewritten, they run on an [N, H, W*3] view
    with the constants tiled along it, the colour flip moves into the consuming convs' weights (input
    channels reversed: the same sums), and the Transpose comes last, where ORT cancels it.

    Returns False, leaving ``graph`` untouched, when the adapter does not have that form.
    """
    nodes = list(graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    consts = {t.name: t for t in graph.initializer}

    def only_consumer(node: onnx.NodeProto) -> onnx.NodeProto | None:
        users = consumers[node.output[0]]
        return users[0] if len(users) == 1 else None

    def const(name: str) -> np.ndarray | None:
        return onnx.numpy_helper.to_array(consts[name]) if name in consts else None

    def attr(node: onnx.NodeProto, name: str) -> Any:
        return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)

    transpose = next(
        (n for n in nodes if n.op_type == "Transpose" and list(attr(n, "perm") or []) == [0, 3, 1, 2]), None
    )
    cast = transpose and only_consumer(transpose)
    if cast is None or cast.op_type != "Cast" or attr(cast, "to") != onnx.TensorProto.FLOAT:
        return False
    chain = [transpose, cast]
    flip = only_consumer(cast)
    if flip is not None and flip.op_type == "Slice":
        starts, ends, axes, steps = (const(name) for name in flip.input[1:5])
        if any(v is None for v in (starts, ends, axes, steps)) or list(axes) not in ([1], [-3]):
            return False
        if list(np.arange(3)[int(starts[0]) : int(ends[0]) : int(steps[0])]) != [2, 1, 0]:
            return False
        chain.append(flip)
    else:
        flip = None
    mul = only_consumer(chain[-1])
    sub = mul and only_consumer(mul)
    if mul is None or sub is None or (mul.op_type, sub.op_type) != ("Mul", "Sub") or sub.input[0] != mul.output[0]:
        return False
    scale, shift = const(mul.input[1]), const(sub.input[1])
    if scale is None or shift is None or scale.shape != (1, 3, 1, 1) or shift.shape != (1, 3, 1, 1):
        return False
    convs = [n for n in consumers[sub.output[0]] if n.op_type != "Shape"]  # a Shape does not see the flip
    if flip is not None:
        weights = [conv.input[1] for conv in convs if conv.op_type == "Conv"]
        if len(weights) != len(convs) or any(attr(conv, "group") not in (None, 1) for conv in convs):
            return False
        if any(len(consumers[w]) != 1 or const(w) is None for w in weights):
            return False  # a shared or computed weight cannot take the flip
    chain += [mul, sub]

    h, w = input_size
    order = slice(None, None, -1) if flip is not None else slice(None)
    prefix = "channels_last_input/"
    new_consts = {
        prefix + "flat": np.array([0, h, w * 3], np.int64),
        prefix + "nhwc": np.array([0, h, w, 3], np.int64),
        prefix + "scale": np.tile(scale.reshape(3)[order], w).astype(np.float32),
        prefix + "shift": np.tile(shift.reshape(3)[order], w).astype(np.float32),
    }
    make = onnx.helper.make_node
    p = prefix
    replacement = [
        make("Cast", [transpose.input[0]], [p + "float"], name=p + "Cast", to=onnx.TensorProto.FLOAT),
        make("Reshape", [p + "float", p + "flat"], [p + "flat_x"], name=p + "Reshape"),
        make("Mul", [p + "flat_x", p + "scale"], [p + "scaled"], name=p + "Mul"),
        make("Sub", [p + "scaled", p + "shift"], [p + "normalised"], name=p + "Sub"),
        make("Reshape", [p + "normalised", p + "nhwc"], [p + "nhwc_x"], name=p + "Reshape_1"),
        make("Transpose", [p + "nhwc_x"], [sub.output[0]], name=p + "Transpose", perm=[0, 3, 1, 2]),
    ]
    if flip is not None:
        for conv in convs:
            weight = consts[conv.input[1]]
            weight.CopyFrom(onnx.numpy_helper.from_array(const(conv.input[1])[:, ::-1].copy(), weight.name))
    position = nodes.index(transpose)
    dropped = {id(n) for n in chain}
    kept = [n for n in nodes if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept[:position] + replacement + kept[position:])
    graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in new_consts.items())
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # the old chain's constants
    for t in unused:
        graph.initializer.remove(t)
    return True


def _calibration_model(model: onnx.ModelProto, selected: list[onnx.NodeProto]) -> onnx.ModelProto:
    """The part of ``model`` that computes the selected nodes, with their outputs as the graph's outputs.

    ORT's calibrator collects every float tensor of the given op types in the whole graph; in the decode
    and NMS tail some are empty when nothing is detected, and its histogram calibrators fail on an empty
    tensor. Cutting the graph after the network also spares running the tail on every frame.
    """
    nodes = list(model.graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    index = {id(node): i for i, node in enumerate(nodes)}
    wanted = [index[id(node)] for node in selected]
    keep = set(wanted) | _reach(wanted, lambda i: [producer[name] for name in nodes[i].input if name in producer])
    types = {vi.name: vi for vi in (*model.graph.value_info, *model.graph.output)}
    outputs = [types[name] for i in wanted for name in nodes[i].output if name in types]
    sub = onnx.ModelProto()
    sub.CopyFrom(model)
    del sub.graph.node[:], sub.graph.output[:]
    sub.graph.node.extend(nodes[i] for i in sorted(keep))
    sub.graph.output.extend(outputs)
    used = {name for i in keep for name in nodes[i].input}
    initializers = [t for t in sub.graph.initializer if t.name in used]  # ORT warns about each unused one
    del sub.graph.initializer[:]
    sub.graph.initializer.extend(initializers)
    return sub


def _calibrate(model_path: Path, op_types: list[str], method: Any, input_name: str, frames: list[np.ndarray]) -> Any:
    """Activation ranges (ORT ``TensorsData``) of ``op_types``' tensors in ``model_path`` over ``frames``."""
    from onnxruntime.quantization import create_calibrator

    calibrator = create_calibrator(
        model_path, op_types, augmented_model_path=str(model_path.with_name("augmented.onnx")), calibrate_method=method
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress and settings
        # In chunks: ORT holds every calibrated tensor of every frame of one collect_data call in memory.
        for start in range(0, len(frames), CALIBRATION_CHUNK):
            calibrator.collect_data(_FrameReader(input_name, frames[start : start + CALIBRATION_CHUNK]))
        return calibrator.compute_data()


def _module_path(node_name: str) -> str:
    """The dotted module path (``det_head.cls_preds.0``) of a node the exporter named inside ``/net/``.

    Each scope level is the module's name relative to the last one that is not a container, so a
    Sequential's or ModuleList's item repeats its parent's name (``/net/backbone/dark2/dark2.0/...``,
    ``/net/det_head/cls_preds.0/Conv``): such a level replaces its parent's last name instead of adding one.
    """
    scopes = node_name.split("/")[2:-1] if node_name.startswith("/net/") else []
    path: list[str] = []
    for scope in scopes:
        if path and scope.startswith(path[-1] + "."):
            path[-1] = scope
        else:
            path.append(scope)
    return ".".join(path)


def _in_modules(node_name: str, modules: tuple[str, ...]) -> bool:
    """Whether the exporter named ``node_name`` inside one of ``modules`` (dotted paths, ``backbone.stem``)."""
    path = _module_path(node_name)
    return any(path == m or path.startswith(m + ".") for m in modules)


def quantize_model(
    fp32_onnx: str | os.PathLike,
    out_path: str | os.PathLike,
    frames: list[np.ndarray],
    method: str = "entropy",
    per_channel: bool = True,
    keep_float: tuple[str, ...] = (),
) -> Path:
    """Quantize the fused export ``fp32_onnx`` to INT8 (QDQ) at ``out_path``, calibrated on ``frames``.

    Args:
        frames: network inputs, uint8 [H, W, 3] at the size the graph takes (``calibration_frames``).
        method: activation range from calibration: "entropy" (KL divergence), "percentile" (99.999 %,
            clips rare outliers) or "minmax" (the full range seen). Entropy scored best on the shipped
            YOLOX-Nano network (CamVid val mAP50 0.599 / 0.588 / 0.580 with the same modules float).
        per_channel: one weight scale per output channel rather than per tensor (depthwise convs' channels
            differ widely in range). On the trained 288x512 model: seg agreement with FP32 0.9977 against
            0.9972, 326 against 322 of 332 detections matched, about 5 % slower.
        keep_float: dotted module paths of the network (``backbone.stem``, ``det_head.cls_preds``) whose
            nodes stay float (``_in_modules``). A network lists them as ``int8_float_modules`` where
            quantizing them costs too much accuracy.
    Returns:
        ``out_path``. Raises ModelError naming the file for a missing, contract-less, raw-format or
        already quantized model; ValueError for a bad ``method`` or ``frames``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(fp32_onnx), Path(out_path)
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    contract = read_contract(src)
    if contract.format != "fused":
        raise ModelError(f"{src}: format {contract.format!r}; quantization takes a fused export (NMS in the graph)")
    if "quantization" in contract.extra:
        raise ModelError(f"{src}: already quantized ({contract.name}); quantize the FP32 export")
    h, w = contract.graph_input_size
    if not frames or any(f.dtype != np.uint8 or f.shape != (h, w, 3) for f in frames):
        raise ValueError(f"frames must be a non-empty list of uint8 [{h}, {w}, 3] images")
    calibrate_method = {
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
    }[method]

    # Every file ORT writes (shape-inferred copies, the augmented calibration model) lands next to the
    # model it works on, so all of them are made here and vanish with the folder.
    with tempfile.TemporaryDirectory(prefix="perception-quantize-") as tmp:
        prepared, calib, ranges = Path(tmp) / "prepared.onnx", Path(tmp) / "calib.onnx", Path(tmp) / "ranges.json"
        quantized = Path(tmp) / "int8.onnx"
        # ONNX shape inference and ORT's constant folding, as quantize_static recommends. Symbolic shape
        # inference is skipped: it cannot follow NonMaxSuppression's data-dependent output size and fails
        # ("Incomplete symbolic shape inference"), and the quantizer needs only element types.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        for i, node in enumerate(model.graph.node):
            # nodes_to_quantize matches names; an unnamed node must not match an unnamed network node
            node.name = node.name or f"_unnamed_{i}_{node.op_type}"
        channels_last_input(model.graph, contract.input_size)
        selected = network_nodes(model.graph)
        selected = [node for node in selected if not _in_modules(node.name, keep_float)]
        if not any(node.op_type in COMPUTE_OP_TYPES for node in selected):
            raise ModelError(f"{src}: no Conv, Gemm or MatMul to quantize")
        op_types = sorted({node.op_type for node in selected})
        onnx.save(model, str(prepared))
        onnx.save(_calibration_model(model, selected), str(calib))
        save_tensors_data(_calibrate(calib, op_types, calibrate_method, contract.input_name, frames), ranges)
        # uint8 activations with int8 weights (U8S8), as ORT advises for x86: its integer convolutions
        # multiply u8 x s8 (AVX512-VNNI vpdpbusd, AVX2 vpmaddubsw). Measured on the 288x512 MobileNetV4
        # export, 2 threads on an AVX512-VNNI EPYC: FP32 18.9 ms, U8S8 12.2 ms, int8 activations (S8S8)
        # 20.7 ms, slower than FP32. VNNI accumulates in 32 bits without saturating, so reduce_range
        # (7-bit weights) gained no speed and cost accuracy.
        quantize_static(
            str(prepared),
            str(quantized),
            calibration_data_reader=None,
            calibration_cache_path=ranges,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_quantize=[node.name for node in selected],
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate_method,
        )
        model = onnx.load(str(quantized))

    record: dict[str, Any] = {
        "method": method,
        "frames": len(frames),
        "per_channel": per_channel,
        "activation_type": "uint8",
        "weight_type": "int8",
        "op_types": op_types,
    }
    if keep_float:
        record["float_modules"] = list(keep_float)
    contract = replace(contract, name=f"{contract.name}-int8", extra={**contract.extra, "quantization": record})
    del model.metadata_props[:]  # quantize_static's own markers go; the contract is what the runtime reads
    onnx.helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    log.info(
        "%s: %d nodes quantized (%s), %s calibration on %d frames", out, len(selected), op_types, method, len(frames)
    )
    return out


# --- agreement with FP32 ----------------------------------------------------------------------------------
def _match(a: np.ndarray, b: np.ndarray) -> int:
    """Detections of ``a`` matched one to one to ``b`` (rows x1, y1, x2, y2, score, class): same class, IoU >= 0.5."""
    from perception.postprocess.nms import box_iou

    if not len(a) or not len(b):
        return 0
    iou = box_iou(a[:, :4], b[:, :4])
    iou[a[:, 5][:, None] != b[:, 5][None, :]] = 0
    matched = 0
    for r in np.argsort(-a[:, 4]):  # most confident first, each taking its best free partner
        c = int(np.argmax(iou[r]))
        if iou[r, c] >= MATCH_IOU:
            matched += 1
            iou[:, c] = 0
    return matched


def compare_outputs(
    fp32_path: str | os.PathLike, int8_path: str | os.PathLike, frames: list[np.ndarray]
) -> dict[str, Any]:
    """Agreement of the INT8 file with its FP32 source on ``frames`` (CPU execution provider, batch 1).

    Returns ``frames``; ``seg_agreement``, the fraction of seg pixels with the same class (None without
    a seg output); ``dets_fp32`` and ``dets_int8``, detections in all frames; ``matched``, detections
    paired one to one across the two (same class, IoU >= ``match_iou``).
    """
    from perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    cpu = ("CPUExecutionProvider",)
    fp32, int8 = OnnxRuntimeBackend(fp32_path, providers=cpu), OnnxRuntimeBackend(int8_path, providers=cpu)
    equal = pixels = n_fp32 = n_int8 = matched = 0
    for frame in frames:
        a, b = fp32.infer(frame[None]), int8.infer(frame[None])
        if "seg" in a:
            equal += int((a["seg"] == b["seg"]).sum())
            pixels += a["seg"].size
        if "dets" in a:
            da, db = a["dets"][0, : int(a["num_dets"][0])], b["dets"][0, : int(b["num_dets"][0])]
            n_fp32, n_int8 = n_fp32 + len(da), n_int8 + len(db)
            matched += _match(db, da)
    return {
        "frames": len(frames),
        "seg_agreement": equal / pixels if pixels else None,
        "dets_fp32": n_fp32,
        "dets_int8": n_int8,
        "matched": matched,
        "match_iou": MATCH_IOU,
    }
