"""A small Darknet inference engine in numpy: reads a YOLO ``.cfg`` and its ``.weights`` and runs the
forward pass on the CPU.

Why not ``cv2.dnn.readNetFromDarknet``: OpenCV 5 removed its Darknet importer ("Darknet importer has been
removed", also from ``cv2.dnn.readNet``), and the runtime requirement is ``opencv-python-headless>=4.8``,
so the project cannot rely on it. This module implements the layer types the Yolo-Fastest family uses,
with Darknet's (AlexeyAB fork) inference semantics; its output was checked against OpenCV 4.14's Darknet
importer on real frames (docs/teachers.md).

Supported sections: ``[net]`` (width, height, channels), ``[convolutional]`` (filters, size, stride,
pad/padding, groups, batch_normalize, activation leaky / linear / relu / logistic), ``[maxpool]``
(size, stride, padding), ``[route]`` (layers, groups, group_id), ``[shortcut]`` (from, activation
linear), ``[upsample]`` (stride), ``[dropout]`` (identity at inference) and ``[yolo]`` (mask, anchors,
classes, num, scale_x_y). Anything else is a ``ModelError`` naming the file and the section.

Weights file: int32 major, minor, revision; ``seen`` as int64 (int32 for versions before 0.2); then per
convolutional layer, in order: biases [F], and with batch norm scales [F], rolling mean [F], rolling
variance [F]; then the kernel [F, C / groups, k, k], all float32. Batch norm is folded into the kernel
at load time (``(x - mean) / sqrt(var + 1e-6) * scale + bias``, Darknet's epsilon).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from perception.errors import ModelError

BN_EPS = 1e-6
LEAKY_SLOPE = 0.1


@dataclass
class _Section:
    kind: str
    options: dict[str, str]
    line: int

    def get_int(self, key: str, default: int | None = None) -> int:
        return int(self._get(key, default))

    def get_float(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, default))

    def get_ints(self, key: str, default: str | None = None) -> list[int]:
        return [int(v) for v in str(self._get(key, default)).split(",") if v.strip()]

    def _get(self, key: str, default):
        if key in self.options:
            return self.options[key]
        if default is None:
            raise KeyError(key)
        return default


@dataclass
class YoloHead:
    """One ``[yolo]`` layer: its anchors (input pixels) and the index of the layer feeding it."""

    layer: int
    anchors: np.ndarray  # float32 [A, 2] (w, h) in input pixels, the masked subset
    classes: int
    scale_x_y: float = 1.0


@dataclass
class _Layer:
    kind: str
    section: _Section
    in_channels: int
    out_channels: int
    params: dict = field(default_factory=dict)


def parse_cfg(path: Path) -> list[_Section]:
    """Sections of a Darknet .cfg in file order; ModelError naming the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise ModelError(f"{path}: cannot read Darknet cfg ({err.strerror or err})") from err
    sections: list[_Section] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelError(f"{path}:{n}: malformed section header {raw.strip()!r}")
            sections.append(_Section(line[1:-1].strip().lower(), {}, n))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ModelError(f"{path}:{n}: expected 'key=value' inside a section, got {raw.strip()!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError(f"{path}: a Darknet cfg starts with a [net] section")
    return sections


class DarknetNet:
    """A Darknet YOLO network run in numpy (module docstring: layers and weight layout).

    Args:
        cfg_path: the ``.cfg`` file. weights_path: the matching ``.weights`` file.

    Attributes:
        input_hw: (H, W) of the network input (from ``[net]``).
        heads: the ``[yolo]`` layers, in cfg order.

    Raises:
        ModelError: naming the file, when a file is missing or unreadable, uses an unsupported layer, or the
            weights file is shorter or longer than the cfg needs.
    """

    def __init__(self, cfg_path: str | os.PathLike, weights_path: str | os.PathLike):
        self.cfg_path, self.weights_path = Path(cfg_path), Path(weights_path)
        for p in (self.cfg_path, self.weights_path):
            if not p.is_file():
                raise ModelError(f"{p}: Darknet model file not found")
        sections = parse_cfg(self.cfg_path)
        net = sections[0]
        try:
            self.input_hw = (net.get_int("height"), net.get_int("width"))
            channels = net.get_int("channels", 3)
        except (KeyError, ValueError) as err:
            raise ModelError(f"{self.cfg_path}: [net] needs integer width, height (and channels): {err}") from err
        self.layers: list[_Layer] = []
        self.heads: list[YoloHead] = []
        out_channels: list[int] = []
        for s in sections[1:]:
            c_in = out_channels[-1] if out_channels else channels
            try:
                layer = self._build(s, c_in, out_channels)
            except (KeyError, ValueError, IndexError) as err:
                raise ModelError(f"{self.cfg_path}:{s.line}: bad [{s.kind}] section ({err!r})") from err
            self.layers.append(layer)
            out_channels.append(layer.out_channels)
        self._load_weights()

    # -- construction -------------------------------------------------------------------------------

    def _abs(self, ref: int, here: int) -> int:
        index = here + ref if ref < 0 else ref
        if not 0 <= index < here:
            raise IndexError(f"layer reference {ref} from layer {here} is out of range")
        return index

    def _build(self, s: _Section, c_in: int, out_channels: list[int]) -> _Layer:
        here = len(self.layers)
        if s.kind in ("convolutional", "conv"):
            filters, size, stride = s.get_int("filters"), s.get_int("size", 1), s.get_int("stride", 1)
            groups = s.get_int("groups", 1)
            pad = size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)
            activation = s.options.get("activation", "logistic")
            if activation not in ("leaky", "linear", "relu", "logistic"):
                raise ModelError(f"{self.cfg_path}:{s.line}: activation {activation!r} is not supported")
            if c_in % groups or filters % groups:
                raise ValueError(f"groups={groups} does not divide {c_in} input and {filters} output channels")
            params = {
                "filters": filters,
                "size": size,
                "stride": stride,
                "pad": pad,
                "groups": groups,
                "bn": bool(s.get_int("batch_normalize", 0)),
                "activation": activation,
            }
            return _Layer("conv", s, c_in, filters, params)
        if s.kind == "maxpool":
            size = s.get_int("size", 1)
            stride = s.get_int("stride", size)
            return _Layer(
                "maxpool", s, c_in, c_in, {"size": size, "stride": stride, "pad": s.get_int("padding", size - 1)}
            )
        if s.kind == "route":
            refs = [self._abs(r, here) for r in s.get_ints("layers")]
            groups, group_id = s.get_int("groups", 1), s.get_int("group_id", 0)
            total = sum(out_channels[r] for r in refs)
            return _Layer("route", s, c_in, total // groups, {"refs": refs, "groups": groups, "group_id": group_id})
        if s.kind == "shortcut":
            ref = self._abs(s.get_int("from"), here)
            if s.options.get("activation", "linear") != "linear":
                raise ModelError(f"{self.cfg_path}:{s.line}: only linear [shortcut] activation is supported")
            if out_channels[ref] != c_in:
                raise ValueError(f"[shortcut] adds {out_channels[ref]} channels to {c_in}")
            return _Layer("shortcut", s, c_in, c_in, {"ref": ref})
        if s.kind == "upsample":
            return _Layer("upsample", s, c_in, c_in, {"stride": s.get_int("stride", 2)})
        if s.kind == "dropout":
            return _Layer("dropout", s, c_in, c_in)
        if s.kind == "yolo":
            mask = s.get_ints("mask")
            anchors = np.array(s.get_ints("anchors"), np.float32).reshape(-1, 2)[mask]
            classes = s.get_int("classes")
            if c_in != len(mask) * (5 + classes):
                raise ValueError(f"[yolo] expects {len(mask)} x (5 + {classes}) input channels, got {c_in}")
            if s.get_int("new_coords", 0):
                raise ModelError(f"{self.cfg_path}:{s.line}: [yolo] new_coords=1 is not supported")
            self.heads.append(YoloHead(here, anchors, classes, s.get_float("scale_x_y", 1.0)))
            return _Layer("yolo", s, c_in, c_in, {"head": len(self.heads) - 1})
        raise ModelError(f"{self.cfg_path}:{s.line}: Darknet layer [{s.kind}] is not supported")

    def _load_weights(self) -> None:
        path = self.weights_path
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ModelError(f"{path}: cannot read Darknet weights ({err.strerror or err})") from err
        if len(data) < 16:
            raise ModelError(f"{path}: too short for a Darknet weights file ({len(data)} bytes)")
        major, minor, _ = np.frombuffer(data[:12], np.int32)
        header = 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16
        values = np.frombuffer(data[header:], np.float32) if (len(data) - header) % 4 == 0 else None
        if values is None:
            raise ModelError(f"{path}: size {len(data)} bytes is not a header plus float32 values")
        pos = 0
        for layer in self.layers:
            if layer.kind != "conv":
                continue
            p = layer.params
            f, k, cg = p["filters"], p["size"], layer.in_channels // p["groups"]
            need = f * (4 if p["bn"] else 1) + f * cg * k * k
            if pos + need > len(values):
                raise ModelError(
                    f"{path}: ends inside layer {self.layers.index(layer)} ({len(values)} values, the cfg "
                    f"{self.cfg_path.name} needs more): weights and cfg do not match"
                )
            bias = values[pos : pos + f].astype(np.float64)
            pos += f
            scale = np.ones(f)
            if p["bn"]:
                gamma, mean, var = (values[pos + i * f : pos + (i + 1) * f].astype(np.float64) for i in range(3))
                pos += 3 * f
                scale = gamma / np.sqrt(var + BN_EPS)
                bias = bias - mean * scale
            kernel = values[pos : pos + f * cg * k * k].astype(np.float64).reshape(f, cg, k, k)
            pos += f * cg * k * k
            p["kernel"] = (kernel * scale[:, None, None, None]).astype(np.float32)
            p["bias"] = bias.astype(np.float32)
        if pos != len(values):
            raise ModelError(
                f"{path}: {len(values) - pos} float32 values left after the last layer of "
                f"{self.cfg_path.name}: weights and cfg do not match"
            )

    # -- inference ----------------------------------------------------------------------------------

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        """Run the network on one input.

        Args:
            blob: float32 [C, H, W] (or [1, C, H, W]) at ``input_hw``, preprocessed as the model expects
                (Yolo-Fastest: RGB / 255).

        Returns:
            One float32 [H_l * W_l * A, 5 + classes] array per ``[yolo]`` head, rows ordered by cell (row
            major) then anchor: cx, cy, w, h as fractions of the input size, objectness, per-class
            probabilities (both sigmoid; the detection score of class c is objectness * probability c).
        """
        x = np.asarray(blob, np.float32)
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 3 or tuple(x.shape[1:]) != self.input_hw:
            raise ValueError(f"input must be float32 [C, {self.input_hw[0]}, {self.input_hw[1]}], got {list(x.shape)}")
        outs: list[np.ndarray] = []
        results: list[np.ndarray | None] = [None] * len(self.heads)
        for layer in self.layers:
            p = layer.params
            if layer.kind == "conv":
                x = _activate(_conv(x, p["kernel"], p["bias"], p["stride"], p["pad"], p["groups"]), p["activation"])
            elif layer.kind == "maxpool":
                x = _maxpool(x, p["size"], p["stride"], p["pad"])
            elif layer.kind == "route":
                x = np.concatenate([outs[r] for r in p["refs"]], 0)
                if p["groups"] > 1:
                    step = x.shape[0] // p["groups"]
                    x = x[p["group_id"] * step : (p["group_id"] + 1) * step]
            elif layer.kind == "shortcut":
                x = x + outs[p["ref"]]
            elif layer.kind == "upsample":
                x = x.repeat(p["stride"], 1).repeat(p["stride"], 2)
            elif layer.kind == "yolo":
                results[p["head"]] = self._decode(x, self.heads[p["head"]])
            outs.append(x)
        return [r for r in results if r is not None]

    def _decode(self, x: np.ndarray, head: YoloHead) -> np.ndarray:
        a, n = len(head.anchors), 5 + head.classes
        _, h, w = x.shape
        t = x.reshape(a, n, h, w).transpose(2, 3, 0, 1)  # [H, W, A, 5 + classes]
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        sig = _sigmoid(t)
        s = head.scale_x_y
        out = np.empty((h, w, a, n), np.float32)
        out[..., 0] = (sig[..., 0] * s - (s - 1) / 2 + gx[..., None]) / w
        out[..., 1] = (sig[..., 1] * s - (s - 1) / 2 + gy[..., None]) / h
        out[..., 2] = np.exp(t[..., 2]) * head.anchors[:, 0] / self.input_hw[1]
        out[..., 3] = np.exp(t[..., 3]) * head.anchors[:, 1] / self.input_hw[0]
        out[..., 4:] = sig[..., 4:]
        return out.reshape(-1, n)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # overflow-free logistic


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "leaky":
        return np.maximum(x, x * np.float32(LEAKY_SLOPE))
    if activation == "relu":
        return np.maximum(x, 0)
    if activation == "logistic":
        return _sigmoid(x)
    return x


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 a [M, K] @ b [K, N] with OpenCV's GEMM.

    Not numpy's ``@``: multi-threaded BLAS spin-waits when the cores are busy (measured here on 2 shared
    cores: a 64x16 @ 16x25600 product took 23 ms instead of 0.8 ms), while OpenCV's GEMM follows
    ``cv2.setNumThreads``, which the CLI sets to 1.
    """
    return cv2.gemm(np.ascontiguousarray(a), np.ascontiguousarray(b), 1.0, None, 0.0)


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    """Convolution of float32 [C, H, W] with kernel [F, C / groups, k, k] (cross-correlation, as Darknet)."""
    c, h, w = x.shape
    f, cg, k, _ = kernel.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if k == 1 and stride == 1 and pad == 0 and groups == 1:
        y = _matmul(kernel.reshape(f, c), x.reshape(c, h * w))
        return (y + bias[:, None]).reshape(f, ho, wo)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad))) if pad else x

    def tap(dy: int, dx: int) -> np.ndarray:
        return xp[:, dy : dy + stride * (ho - 1) + 1 : stride, dx : dx + stride * (wo - 1) + 1 : stride]

    if groups == c and cg == 1 and f == c:  # depthwise: k*k multiply-adds over the whole map, in place
        y = np.empty((c, ho, wo), np.float32)
        tmp = np.empty_like(y)
        np.multiply(tap(0, 0), kernel[:, 0, 0, 0, None, None], out=y)
        for i in range(1, k * k):
            np.multiply(tap(i // k, i % k), kernel[:, 0, i // k, i % k, None, None], out=tmp)
            y += tmp
        y += bias[:, None, None]
        return y
    cols = np.stack([tap(dy, dx) for dy in range(k) for dx in range(k)], 1)  # [C, k*k, Ho, Wo]
    cols = cols.reshape(groups, cg * k * k, ho * wo)
    fg = f // groups
    y = np.concatenate([_matmul(kernel[g * fg : (g + 1) * fg].reshape(fg, -1), cols[g]) for g in range(groups)], 0)
    return (y + bias[:, None]).reshape(f, ho, wo)


def _maxpool(x: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """Darknet max pooling: window ``size`` at ``stride``, ``pad // 2`` cells of -inf before each axis."""
    c, h, w = x.shape
    ho, wo = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    before = pad // 2
    after_h = max(0, (ho - 1) * stride + size - before - h)
    after_w = max(0, (wo - 1) * stride + size - before - w)
    xp = np.pad(x, ((0, 0), (before, after_h), (before, after_w)), constant_values=-np.inf)
    rows = xp[:, 0 : stride * (ho - 1) + 1 : stride]
    for i in range(1, size):
        rows = np.maximum(rows, xp[:, i : i + stride * (ho - 1) + 1 : stride])
    out = rows[:, :, 0 : stride * (wo - 1) + 1 : stride]
    for i in range(1, size):
        out = np.maximum(out, rows[:, :, i : i + stride * (wo - 1) + 1 : stride])
    return out
