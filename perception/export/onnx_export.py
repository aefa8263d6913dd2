"""Export a multi-task network to one self-describing ONNX file.

``fused``: the graph runs preprocessing, the network, segmentation argmax, box decoding and
NonMaxSuppression, and returns the contract's ``seg``, ``dets``, ``num_dets``. ``raw``: it stops after
the network (plus argmax) and the host decodes and runs NMS. Either way the contract JSON goes into
``metadata_props`` under ``perception.contract``.

A fused contract with ``frame_size`` gives the whole-frame variant for a fixed camera: Resize + Pad in
front of the graph letterbox the camera frame (geometry from ``preprocess.letterbox_geometry``, so it is
the host's), and the boxes of ``dets`` are mapped back to frame pixels after the NMS.

The network part is traced with PyTorch's TorchScript exporter; the NMS tail is appended with
``onnx.helper`` because its padding to a fixed [N, K, 6] needs a handful of index ops that are clearer
written out than traced.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from perception.nets.contract_graph import IMAGENET_MEAN, IMAGENET_STD, DecodedGraph, RawGraph
from perception.runtime.contract import METADATA_KEY, ModelContract

OPSET = 17


def trace_to_onnx(
    module: nn.Module, example: torch.Tensor, output_names: list[str], dynamic_out: dict
) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which (torch 2.14) refuses a
        # dynamic batch dimension that may be 1 in this graph; keep the tracer until that works.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=output_names,
            dynamic_axes={"images": {0: "N"}, **dynamic_out},
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def const_node(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _append_nms_tail(model: onnx.ModelProto, max_dets: int, iou: float, score: float) -> onnx.ModelProto:
    """Turn outputs (seg, boxes [N,A,4], scores [N,C,A]) into (seg, dets [N,K,6], num_dets [N]).

    NonMaxSuppression gives (batch, class, box) triples; they are gathered into rows, sorted by batch then
    score, ranked within their batch, and scattered into a zero-padded [N, K, 6].
    """
    g = model.graph
    k = max_dets
    nodes = [
        const_node("nms_max", np.array([k], np.int64)),
        const_node("nms_iou", np.array([iou], np.float32)),
        const_node("nms_score", np.array([score], np.float32)),
        const_node("i0", np.array(0, np.int64)),
        const_node("i1", np.array(1, np.int64)),
        const_node("i2", np.array(2, np.int64)),
        const_node("ax1", np.array([1], np.int64)),
        const_node("ax0", np.array([0], np.int64)),
        const_node("k1", np.array([k], np.int64)),
        const_node("six", np.array([6], np.int64)),
        const_node("minus2", np.array(-2.0, np.float64)),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "nms_max", "nms_iou", "nms_score"], ["sel"]),
        helper.make_node("Gather", ["sel", "i0"], ["sel_b"], axis=1),  # [M]
        helper.make_node("Gather", ["sel", "i1"], ["sel_c"], axis=1),
        helper.make_node("Gather", ["sel", "i2"], ["sel_a"], axis=1),
        helper.make_node("GatherND", ["scores", "sel"], ["sel_score"]),  # [M]
        helper.make_node("Unsqueeze", ["sel_b", "ax1"], ["sel_b1"]),
        helper.make_node("Unsqueeze", ["sel_a", "ax1"], ["sel_a1"]),
        helper.make_node("Concat", ["sel_b1", "sel_a1"], ["sel_ba"], axis=1),
        helper.make_node("GatherND", ["boxes", "sel_ba"], ["sel_box"]),  # [M, 4]
        helper.make_node("Unsqueeze", ["sel_score", "ax1"], ["sel_score1"]),
        helper.make_node("Cast", ["sel_c"], ["sel_cf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["sel_cf", "ax1"], ["sel_cf1"]),
        helper.make_node("Concat", ["sel_box", "sel_score1", "sel_cf1"], ["rows"], axis=1),  # [M, 6]
        # Sort key: batch ascending, then score descending (scores lie in [0, 1], batches 2 apart).
        helper.make_node("Cast", ["sel_b"], ["sel_bd"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["sel_score"], ["sel_sd"], to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["sel_bd", "minus2"], ["key_b"]),
        helper.make_node("Add", ["key_b", "sel_sd"], ["key"]),
        helper.make_node("Shape", ["key"], ["m"]),
        helper.make_node("TopK", ["key", "m"], ["_key_sorted", "order"], largest=1, sorted=1),
        helper.make_node("Gather", ["rows", "order"], ["rows_s"], axis=0),
        helper.make_node("Gather", ["sel_b", "order"], ["b_s"], axis=0),
        # Rank of each row within its batch = position - first position of that batch.
        helper.make_node("Shape", ["boxes"], ["box_shape"]),
        helper.make_node("Gather", ["box_shape", "ax0"], ["n1"], axis=0),  # [1]
        helper.make_node("Squeeze", ["n1", "ax0"], ["n"]),
        helper.make_node("Range", ["i0", "n", "i1"], ["batch_ids"]),
        helper.make_node("Unsqueeze", ["b_s", "ax1"], ["b_s1"]),
        helper.make_node("Unsqueeze", ["batch_ids", "ax0"], ["batch_ids0"]),
        helper.make_node("Equal", ["b_s1", "batch_ids0"], ["onehot"]),  # [M, N]
        helper.make_node("Cast", ["onehot"], ["onehot_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["onehot_i", "ax0"], ["counts"], keepdims=0),  # [N]
        helper.make_node("CumSum", ["counts", "i0"], ["starts"], exclusive=1),
        helper.make_node("Squeeze", ["m", "ax0"], ["m0"]),
        helper.make_node("Range", ["i0", "m0", "i1"], ["pos"]),
        helper.make_node("Gather", ["starts", "b_s"], ["first"], axis=0),
        helper.make_node("Sub", ["pos", "first"], ["rank"]),
        helper.make_node("Squeeze", ["k1", "ax0"], ["k0"]),
        helper.make_node("Less", ["rank", "k0"], ["keep"]),
        helper.make_node("Compress", ["rows_s", "keep"], ["rows_k"], axis=0),
        helper.make_node("Compress", ["b_s", "keep"], ["b_k"], axis=0),
        helper.make_node("Compress", ["rank", "keep"], ["rank_k"], axis=0),
        helper.make_node("Unsqueeze", ["b_k", "ax1"], ["b_k1"]),
        helper.make_node("Unsqueeze", ["rank_k", "ax1"], ["rank_k1"]),
        helper.make_node("Concat", ["b_k1", "rank_k1"], ["scatter_idx"], axis=1),
        helper.make_node("Concat", ["n1", "k1", "six"], ["dets_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape", ["dets_shape"], ["dets_zero"], value=numpy_helper.from_array(np.zeros(1, np.float32))
        ),
        helper.make_node("ScatterND", ["dets_zero", "scatter_idx", "rows_k"], ["dets"]),
        helper.make_node("Min", ["counts", "k0"], ["num_clamped"]),
        helper.make_node("Cast", ["num_clamped"], ["num_dets"], to=TensorProto.INT32),
    ]
    g.node.extend(nodes)
    seg_out = [o for o in g.output if o.name == "seg"]
    del g.output[:]
    g.output.extend(seg_out)
    g.output.append(helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["N", k, 6]))
    g.output.append(helper.make_tensor_value_info("num_dets", TensorProto.INT32, ["N"]))
    return model


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def prepend_letterbox(model: onnx.ModelProto, contract: ModelContract) -> onnx.ModelProto:
    """Make the graph take uint8 [N, FH, FW, 3] frames and letterbox them to the network input itself.

    Resize (bilinear, half-pixel centres, as cv2.INTER_LINEAR) and Pad run on floats and hand the
    network float pixels (its first Cast becomes a no-op): TensorRT takes uint8 only in casts, and
    without a rounding step the graph is one smooth function that eager PyTorch reproduces to float
    precision, which is what the parity check holds it to. Against OpenCV's uint8 letterbox the pixels
    differ by under one grey level.
    """
    from perception.preprocess import letterbox_geometry

    g = model.graph
    name = contract.input_name
    lb = letterbox_geometry(contract.frame_size, contract.input_size, None, contract.align)
    ch, cw = lb.content_hw
    ih, iw = contract.input_size
    _rename_tensor(g, name, "letterboxed")
    pads = [0, lb.pad_y, lb.pad_x, 0, 0, ih - ch - lb.pad_y, iw - cw - lb.pad_x, 0]
    nodes = [
        const_node("lb_hw3", np.array([ch, cw, 3], np.int64)),
        const_node("lb_pads", np.array(pads, np.int64)),
        const_node("lb_pad_value", np.array(contract.pad_value, np.float32)),
        const_node("lb_ax0", np.array([0], np.int64)),
        helper.make_node("Shape", [name], ["frame_shape"]),
        helper.make_node("Gather", ["frame_shape", "lb_ax0"], ["frame_n"], axis=0),
        helper.make_node("Concat", ["frame_n", "lb_hw3"], ["lb_sizes"], axis=0),
        helper.make_node("Cast", [name], ["frame_f"], to=TensorProto.FLOAT),
        helper.make_node(
            "Resize",
            ["frame_f", "", "", "lb_sizes"],
            ["content_f"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Pad", ["content_f", "lb_pads", "lb_pad_value"], ["letterboxed"], mode="constant"),
    ]
    old_nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old_nodes)
    fh, fw = contract.frame_size
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(name, TensorProto.UINT8, ["N", fh, fw, 3]))
    return model


def dets_to_frame(model: onnx.ModelProto, contract: ModelContract) -> onnx.ModelProto:
    """Map the ``dets`` boxes from network-input pixels to frame pixels, clipped to the frame.

    After the NMS, as on the host (IoU is unchanged by the map, the clipping would change it); zero
    padding rows map to zero because the clip floor is 0 and the offsets are the padding.
    """
    from perception.preprocess import letterbox_geometry

    g = model.graph
    lb = letterbox_geometry(contract.frame_size, contract.input_size, None, contract.align)
    fh, fw = contract.frame_size
    _rename_tensor(g, "dets", "dets_input")
    g.node.extend(
        [
            const_node("fr_offset", np.array([lb.pad_x, lb.pad_y] * 2, np.float32)),
            const_node("fr_scale", np.array(lb.scale, np.float32)),
            const_node("fr_zero", np.array(0.0, np.float32)),
            const_node("fr_max", np.array([fw, fh] * 2, np.float32)),
            const_node("fr_split", np.array([4, 2], np.int64)),
            helper.make_node("Split", ["dets_input", "fr_split"], ["d_box", "d_rest"], axis=2),
            helper.make_node("Sub", ["d_box", "fr_offset"], ["d_shift"]),
            helper.make_node("Div", ["d_shift", "fr_scale"], ["d_frame"]),
            helper.make_node("Max", ["d_frame", "fr_zero"], ["d_lo"]),
            helper.make_node("Min", ["d_lo", "fr_max"], ["d_clip"]),
            helper.make_node("Concat", ["d_clip", "d_rest"], ["dets"], axis=2),
        ]
    )
    return model


def export_onnx(
    net: nn.Module,
    contract: ModelContract,
    path: str | Path,
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Path:
    """Export ``net`` (returning ``MultiTaskOutput``) in ``contract.format`` to ``path``.

    The contract's input size, strides, thresholds and class lists define the graph; the file's
    metadata gets the contract JSON. Returns the written path.
    """
    path = Path(path)
    net = net.eval()
    h, w = contract.input_size
    example = torch.zeros(1, h, w, 3, dtype=torch.uint8)
    if contract.format == "raw":
        names = ["seg"] + [f"{kind}_s{s}" for s in contract.strides for kind in ("cls", "box")]
        graph = RawGraph(net, contract.color, mean, std).eval()
        with torch.no_grad():
            model = trace_to_onnx(graph, example, names, {n: {0: "N"} for n in names})
    else:
        graph = DecodedGraph(
            net, contract.input_size, contract.strides, contract.color, mean, std, contract.box_encoding
        ).eval()
        names = ["seg", "boxes", "scores"]
        with torch.no_grad():
            model = trace_to_onnx(graph, example, names, {n: {0: "N"} for n in names})
        model = _append_nms_tail(model, contract.max_dets, contract.iou_threshold, contract.score_threshold)
        if contract.frame_size is not None:
            model = dets_to_frame(prepend_letterbox(model, contract), contract)
    for out in model.graph.output:  # the tracer names dynamic dims after ops; state the fixed ones
        if out.name == "seg":
            dims = out.type.tensor_type.shape.dim
            dims[1].dim_value, dims[2].dim_value = h, w
    contract = replace(contract, extra={**contract.extra, "normalize": {"mean": list(mean), "std": list(std)}})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
