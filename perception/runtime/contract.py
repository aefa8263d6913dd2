"""The model contract: what a model file promises about its inputs and outputs.

An exported model carries the contract as JSON in its ONNX ``metadata_props`` under
``perception.contract`` (a PyTorch checkpoint carries the same dict under the key ``contract``). Backends
parse it with :meth:`ModelContract.from_json` and check the model's real inputs and outputs with
:func:`check_model_io`, so a mismatched model is refused before the first frame.

Two output formats exist:

- ``fused``: ``seg`` uint8 [N, H, W] class ids, ``dets`` float32 [N, K, 6] (x1, y1, x2, y2, score, class
  in input pixels, rows past ``num_dets`` are padding), ``num_dets`` int32 [N]. Decoding and NMS ran
  inside the graph.
- ``raw``: ``seg`` uint8 [N, H, W] plus, per stride s, ``cls_s{s}`` float32 [N, C, H/s, W/s] class logits
  and ``box_s{s}`` float32 [N, 4, H/s, W/s] box distances before activation; the host decodes
  (``postprocess.decode``) and runs NMS.

A fused model may also take whole camera frames (``frame_size``, contract version 2): the graph then
letterboxes the frame to ``input_size`` itself (ONNX Resize + Pad), ``seg`` stays at ``input_size`` and
``dets`` are in frame pixels, so the host does nothing but hand over the frame. Version-1 runtimes refuse
such a file instead of misreading it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from perception.errors import ModelError

METADATA_KEY = "perception.contract"
SUPPORTED_VERSION = 2
WHOLE_FRAME_VERSION = 2  # first version with in-graph letterboxing (``frame_size``)
FORMATS = ("fused", "raw")

# (name, dtype, shape) where a shape entry is an int (must match), a str naming a dynamic dimension, or
# None (anything).
IOSpec = tuple[str, str, tuple[Any, ...]]


@dataclass(frozen=True)
class ModelContract:
    """Parsed ``perception.contract``. Sizes are (H, W) in pixels.

    ``input_size`` is the network's input (the letterboxed image); ``frame_size``, when set, is the camera
    frame the graph takes and letterboxes to ``input_size`` itself.
    """

    input_size: tuple[int, int]
    seg_classes: tuple[str, ...]
    det_classes: tuple[str, ...]
    format: str = "fused"
    input_name: str = "images"
    layout: str = "NHWC"
    color: str = "BGR"
    dtype: str = "uint8"
    pad_value: int = 114
    align: str = "center"
    strides: tuple[int, ...] = (8, 16, 32)
    box_encoding: str = "ltrb_softplus"
    max_dets: int = 100
    score_threshold: float = 0.25
    iou_threshold: float = 0.5
    display_score_threshold: float | None = None  # host default when the graph keeps a lower-scoring tail
    name: str = "unnamed"
    trained_on: tuple[str, ...] = ()
    created: str = ""
    version: int = 1
    frame_size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.input_size
        problems = []
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} is not one of {list(FORMATS)}")
        if self.layout != "NHWC" or self.dtype != "uint8" or self.color not in ("BGR", "RGB"):
            problems.append(f"input must be uint8 NHWC BGR/RGB, contract says {self.dtype} {self.layout} {self.color}")
        if self.align not in ("center", "top-left"):
            problems.append(f"letterbox align {self.align!r} is not 'center' or 'top-left'")
        if h <= 0 or w <= 0 or any(h % s or w % s for s in self.strides):
            problems.append(f"input size {h}x{w} must be positive and divisible by every stride {self.strides}")
        if not self.seg_classes and not self.det_classes:
            problems.append("no seg_classes and no det_classes")
        if not 0 <= self.score_threshold <= 1 or not 0 <= self.iou_threshold <= 1:
            problems.append("thresholds must lie in [0, 1]")
        display = self.display_score_threshold
        if display is not None and not self.score_threshold <= display <= 1:
            problems.append(f"display score {display} must lie in [score threshold {self.score_threshold}, 1]")
        if self.frame_size is not None:
            fh, fw = self.frame_size
            if fh <= 0 or fw <= 0:
                problems.append(f"frame size {fh}x{fw} must be positive")
            if self.format != "fused":
                problems.append("a whole-frame model (frame_size) must be format 'fused'")
            if self.version < WHOLE_FRAME_VERSION:
                problems.append(f"frame_size needs contract version >= {WHOLE_FRAME_VERSION}, got {self.version}")
        if self.version > SUPPORTED_VERSION:
            problems.append(f"contract version {self.version} is newer than this runtime ({SUPPORTED_VERSION})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def host_score_threshold(self) -> float:
        """The score threshold a run applies by default: the display threshold, else the graph's."""
        return self.score_threshold if self.display_score_threshold is None else self.display_score_threshold

    @property
    def graph_input_size(self) -> tuple[int, int]:
        """(H, W) of the image the graph takes: the camera frame for a whole-frame model, else input_size."""
        return self.frame_size if self.frame_size is not None else self.input_size

    # --- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        out: dict[str, Any] = {
            "version": self.version,
            "name": self.name,
            "format": self.format,
            "input": {
                "name": self.input_name,
                "layout": self.layout,
                "color": self.color,
                "dtype": self.dtype,
                "size": list(self.input_size),
                "letterbox": {"pad_value": self.pad_value, "align": self.align},
            },
            "seg_classes": list(self.seg_classes),
            "det_classes": list(self.det_classes),
            "outputs": {name: meaning for name, meaning in self.output_meanings().items()},
            "strides": list(self.strides),
            "box_encoding": self.box_encoding,
            "max_dets": self.max_dets,
            "thresholds": {"score": self.score_threshold, "iou": self.iou_threshold}
            | ({} if self.display_score_threshold is None else {"display_score": self.display_score_threshold}),
            "trained_on": list(self.trained_on),
            "created": self.created,
        }
        if self.frame_size is not None:
            out["input"]["frame_size"] = list(self.frame_size)
            out["input"]["letterbox"]["in_graph"] = True
        out.update(d["extra"])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<contract>") -> ModelContract:
        try:
            inp = d["input"]
            lb = inp.get("letterbox", {})
            thr = d.get("thresholds", {})
            known = {
                "version",
                "name",
                "format",
                "input",
                "seg_classes",
                "det_classes",
                "outputs",
                "strides",
                "box_encoding",
                "max_dets",
                "thresholds",
                "trained_on",
                "created",
            }
            return cls(
                version=int(d.get("version", SUPPORTED_VERSION)),
                name=str(d.get("name", "unnamed")),
                format=str(d.get("format", "fused")),
                input_name=str(inp.get("name", "images")),
                layout=str(inp.get("layout", "NHWC")),
                color=str(inp.get("color", "BGR")),
                dtype=str(inp.get("dtype", "uint8")),
                input_size=(int(inp["size"][0]), int(inp["size"][1])),
                pad_value=int(lb.get("pad_value", 114)),
                align=str(lb.get("align", "center")),
                seg_classes=tuple(str(c) for c in d.get("seg_classes", ())),
                det_classes=tuple(str(c) for c in d.get("det_classes", ())),
                strides=tuple(int(s) for s in d.get("strides", (8, 16, 32))),
                box_encoding=str(d.get("box_encoding", "ltrb_softplus")),
                max_dets=int(d.get("max_dets", 100)),
                score_threshold=float(thr.get("score", 0.25)),
                iou_threshold=float(thr.get("iou", 0.5)),
                display_score_threshold=float(thr["display_score"]) if "display_score" in thr else None,
                trained_on=tuple(str(t) for t in d.get("trained_on", ())),
                created=str(d.get("created", "")),
                frame_size=(int(inp["frame_size"][0]), int(inp["frame_size"][1])) if "frame_size" in inp else None,
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ModelError(f"{source}: invalid '{METADATA_KEY}' contract: {err!s}") from err

    @classmethod
    def from_json(cls, text: str, source: str = "<contract>") -> ModelContract:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelError(f"{source}: '{METADATA_KEY}' metadata is not valid JSON ({err})") from err
        if not isinstance(d, dict):
            raise ModelError(f"{source}: '{METADATA_KEY}' metadata must be a JSON object")
        return cls.from_dict(d, source)

    # --- expected I/O -------------------------------------------------------------------------------
    def output_meanings(self) -> dict[str, str]:
        out = {"seg": "class ids uint8 [N,H,W]"} if self.seg_classes else {}
        if not self.det_classes:
            return out
        if self.format == "fused":
            where = "frame" if self.frame_size is not None else "input"
            out["dets"] = f"x1,y1,x2,y2,score,class in {where} pixels, float32 [N,K,6]"
            out["num_dets"] = "valid rows of dets per image, int32 [N]"
        else:
            for s in self.strides:
                out[f"cls_s{s}"] = f"class logits float32 [N,C,H/{s},W/{s}]"
                out[f"box_s{s}"] = f"box channels in the '{self.box_encoding}' encoding, float32 [N,4,H/{s},W/{s}]"
        return out

    def expected_inputs(self) -> list[IOSpec]:
        h, w = self.graph_input_size
        return [(self.input_name, "uint8", ("N", h, w, 3))]

    def expected_outputs(self) -> list[IOSpec]:
        h, w = self.input_size
        specs: list[IOSpec] = []
        if self.seg_classes:
            specs.append(("seg", "uint8", ("N", h, w)))
        if self.det_classes and self.format == "fused":
            specs.append(("dets", "float32", ("N", "K", 6)))
            specs.append(("num_dets", "int32", ("N",)))
        elif self.det_classes:
            c = len(self.det_classes)
            for s in self.strides:
                specs.append((f"cls_s{s}", "float32", ("N", c, h // s, w // s)))
                specs.append((f"box_s{s}", "float32", ("N", 4, h // s, w // s)))
        return specs


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _shape_matches(expected: Sequence[Any], found: Sequence[Any]) -> bool:
    if len(expected) != len(found):
        return False
    for e, f in zip(expected, found, strict=True):
        # A dynamic dimension in either place matches; a fixed one must agree.
        if isinstance(e, int) and isinstance(f, int) and e != f:
            return False
    return True


def _differences(kind: str, expected: Sequence[IOSpec], declared: Sequence[IOSpec]) -> list[str]:
    """One line per expected tensor that is missing or has another dtype or shape than declared."""
    found = {name: (dt, shape) for name, dt, shape in declared}
    problems = []
    for name, dt, shape in expected:
        if name not in found:
            problems.append(f"{kind} '{name}' expected {dt} {_fmt_shape(shape)}, missing (found {sorted(found)})")
            continue
        fdt, fshape = found[name]
        if fdt != dt or not _shape_matches(shape, fshape):
            problems.append(f"{kind} '{name}' expected {dt} {_fmt_shape(shape)}, found {fdt} {_fmt_shape(fshape)}")
    return problems


def check_model_io(contract: ModelContract, inputs: Sequence[IOSpec], outputs: Sequence[IOSpec], source: str) -> None:
    """Raise ModelError naming every difference between the contract and the model's real I/O.

    ``inputs``/``outputs``: (name, dtype, shape) as the model declares them; dynamic dims as str or None.
    Extra model outputs are allowed (ignored); missing or mismatched ones are not, nor extra inputs.
    """
    problems = _differences("input", contract.expected_inputs(), inputs)
    if len(inputs) != len(contract.expected_inputs()):
        problems.append(f"expected 1 input, found {len(inputs)}: {[n for n, _, _ in inputs]}")
    problems += _differences("output", contract.expected_outputs(), outputs)
    if problems:
        raise ModelError(f"{source}: model does not match its contract ({contract.format}): " + "; ".join(problems))
