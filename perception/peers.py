"""The peer (baseline) models: other people's models of ../shared/peers, each run with its own pre- and
post-processing and its outputs mapped to this project's classes, so a peer and our model are scored by the
same code on the same frames (``perception eval``: ``predict`` gives a ``Prediction``) and timed by the same
loop (``perception bench --peers``: ``PeerPipeline`` gives ``FrameResult`` values, as our ``Pipeline`` does).
The helpers for any model from outside the project (``external_model_path``, ``cpu_session``) serve the
COCO teachers (``perception.teachers``) too.

- TwinLiteNet (BDD100K): drivable area and lane lines. Input ``input`` float32 [1, 3, 360, 640], RGB,
  /255, no mean/std, the frame resized to 640x360 without keeping the aspect ratio (as its demo does).
  Upstream swapped the output names: ``lanes`` is the DRIVABLE AREA, ``segmentation`` the LANE LINES;
  argmax over dim 1 of each.
- NanoDet-m (COCO, 80 classes): input ``input.1`` float32 [1, 3, 416, 416], BGR, mean (103.53, 116.28,
  123.675), std (57.375, 57.12, 58.395); here the frame is letterboxed (aspect kept, zero padding).
  Outputs: three sigmoid class maps [1, cells, 80] for strides 8, 16, 32, then three GFL box maps
  [1, cells, 32] (4 sides x 8 bins: softmax over the bins, expectation over 0..7, times the stride); cell
  centre index*stride + (stride-1)/2, row-major; boxes = centre -/+ distances (left, top, right, bottom).
  Then class-aware NMS (IoU 0.6, as upstream) and at most 100 boxes.

Class mapping of NanoDet's COCO classes (``COCO_TO_DET``): person -> pedestrian, bicycle -> cyclist (the
bike's box, not bike + rider: a caveat when scoring against cyclist boxes), car/bus/truck -> car,
stop sign -> traffic_sign; everything else is dropped. A dataset whose sign class also covers traffic
lights (CamVid's SignSymbol) can pass ``COCO_TO_DET_WITH_LIGHTS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from perception.errors import ModelError
from perception.frames import Detections, Frame, FrameResult, Letterbox, Prediction, SegMap
from perception.postprocess.nms import nms
from perception.preprocess import letterbox_geometry

PEER_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "peers"
TWINLITE_FILE = "twinlitenet_bdd100k_640x360.onnx"
NANODET_FILE = "nanodet_m_coco_416.onnx"
DET_CLASSES = ("car", "pedestrian", "cyclist", "traffic_sign")
COCO_TO_DET = {0: 1, 1: 2, 2: 0, 5: 0, 7: 0, 11: 3}  # COCO id -> index into DET_CLASSES
COCO_TO_DET_WITH_LIGHTS = {**COCO_TO_DET, 9: 3}


def external_model_path(name: str, folder, env_var: str, default_dir: Path, what: str) -> Path:
    """``folder / name``, the folder being ``folder``, else $``env_var``, else ``default_dir``; ModelError
    naming the path and the variable when the file is missing. For models from outside the project."""
    path = Path(folder or os.environ.get(env_var, default_dir)) / name
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found (set {env_var} to the folder holding it)")
    return path


def peer_path(name: str, peer_dir: str | os.PathLike | None = None) -> Path:
    """Path of a peer model file ($PERCEPTION_PEERS, else ../shared/peers next to the repository)."""
    return external_model_path(name, peer_dir, "PERCEPTION_PEERS", PEER_DIR, "peer model")


def cpu_session(path: Path, threads: int, what: str, extended_optimisations_only: bool = False):
    """An ONNX Runtime CPU session for a model from outside the project; ModelError naming the file.

    Its warnings are silenced: the NanoDet and PicoDet exports list initializers as graph inputs, harmlessly.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    if extended_optimisations_only:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        raise ModelError(f"{path}: cannot load {what} ({err})") from err


def _session(path: Path, threads: int):
    # Measured here (onnxruntime 1.32, 2 cores): TwinLiteNet runs in ~290 ms with the "extended" graph
    # optimisations and ~500 ms with "all" (its convolutions get a slower layout); NanoDet is unaffected.
    # The peers get the faster setting, so comparisons are not won by a handicap.
    return cpu_session(path, threads, "peer model", extended_optimisations_only=True)


class TwinLiteNet:
    """Drivable area + lane lines; ``predict(frame_bgr)`` -> Prediction with seg only (no boxes)."""

    name = "twinlitenet"
    input_hw = (360, 640)

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 0):
        self.session = _session(Path(path) if path else peer_path(TWINLITE_FILE), threads)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        h, w = self.input_hw
        img = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)
        return (cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(["lanes", "segmentation"], {"input": inputs})

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        return self.finish(self.run(self.preprocess(frame_bgr)), frame_bgr.shape[:2])

    def finish(self, outputs: list[np.ndarray], frame_hw: tuple[int, int]) -> Prediction:
        drivable, lanes = outputs
        seg = np.zeros(self.input_hw, np.uint8)
        seg[drivable[0].argmax(0) == 1] = 1
        seg[lanes[0].argmax(0) == 1] = 2  # paint lies on the road: lane wins where both fire
        h, w = frame_hw
        seg = cv2.resize(seg, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return Prediction(seg, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


class NanoDet:
    """NanoDet-m on COCO mapped to our detection classes; ``predict(frame_bgr)`` -> Prediction, no seg."""

    name = "nanodet"
    input_hw = (416, 416)
    strides = (8, 16, 32)
    mean = np.array([103.53, 116.28, 123.675], np.float32)
    std = np.array([57.375, 57.12, 58.395], np.float32)

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        threads: int = 0,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.6,
        max_dets: int = 100,
        class_map: dict[int, int] | None = None,
    ):
        self.session = _session(Path(path) if path else peer_path(NANODET_FILE), threads)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_dets = max_dets
        self.class_map = dict(COCO_TO_DET if class_map is None else class_map)
        outs = self.session.get_outputs()
        self.cls_names = [o.name for o in outs[:3]]
        self.box_names = [o.name for o in outs[3:]]
        ih, iw = self.input_hw
        centres = []
        for s in self.strides:
            gy, gx = np.mgrid[0 : -(-ih // s), 0 : -(-iw // s)]
            centres.append(np.stack([gx.ravel() * s + (s - 1) / 2, gy.ravel() * s + (s - 1) / 2], 1))
        self.centres = np.concatenate(centres).astype(np.float32)
        self.cell_strides = np.concatenate([np.full(-(-ih // s) * -(-iw // s), s, np.float32) for s in self.strides])

    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        h, w = frame_bgr.shape[:2]
        lb = letterbox_geometry((h, w), self.input_hw)
        ih, iw = self.input_hw
        canvas = np.zeros((ih, iw, 3), np.float32)
        nh, nw = round(h * lb.scale), round(w * lb.scale)
        resized = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        canvas[lb.pad_y : lb.pad_y + nh, lb.pad_x : lb.pad_x + nw] = (resized - self.mean) / self.std
        return canvas.transpose(2, 0, 1)[None], lb

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.cls_names + self.box_names, {"input.1": inputs})

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        inputs, lb = self.preprocess(frame_bgr)
        return self.finish(self.run(inputs), lb)

    def finish(self, outs: list[np.ndarray], lb: Letterbox) -> Prediction:
        scores = np.concatenate([o[0] for o in outs[:3]])  # [cells, 80], already sigmoid
        reg = np.concatenate([o[0] for o in outs[3:]]).reshape(-1, 4, 8)
        reg = np.exp(reg - reg.max(-1, keepdims=True))
        dist = (reg / reg.sum(-1, keepdims=True)) @ np.arange(8, dtype=np.float32) * self.cell_strides[:, None]
        boxes = np.concatenate([self.centres - dist[:, :2], self.centres + dist[:, 2:]], 1)
        coco_ids = np.array(sorted(self.class_map), np.int64)
        sub = scores[:, coco_ids]
        cell, k = np.nonzero(sub > self.score_threshold)
        cand_scores = sub[cell, k]
        order = np.argsort(-cand_scores, kind="stable")[:1000]
        cell, k, cand_scores = cell[order], k[order], cand_scores[order]
        coco = coco_ids[k]
        keep = nms(boxes[cell], cand_scores, self.iou_threshold, labels=coco, max_output=self.max_dets)
        labels = np.array([self.class_map[int(c)] for c in coco[keep]], np.int64)
        frame_boxes = lb.boxes_to_frame(boxes[cell][keep]).astype(np.float32)
        return Prediction(None, frame_boxes.reshape(-1, 4), cand_scores[keep].astype(np.float32), labels)


class PeerStack:
    """The peer pipeline: TwinLiteNet for road and lanes + NanoDet-m for objects, one frame at a time."""

    name = "peers"

    def __init__(self, peer_dir: str | os.PathLike | None = None, threads: int = 0, **nanodet_kw):
        self.seg = TwinLiteNet(peer_path(TWINLITE_FILE, peer_dir), threads)
        self.det = NanoDet(peer_path(NANODET_FILE, peer_dir), threads, **nanodet_kw)

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        s, d = self.seg.predict(frame_bgr), self.det.predict(frame_bgr)
        return Prediction(s.seg, d.boxes, d.scores, d.labels)


class PeerPipeline:
    """The peer stack (TwinLiteNet + NanoDet-m, ../shared/peers) behind the ``Pipeline`` interface, so the
    runner decodes, times and writes it exactly like our model. Each peer keeps its own pre- and
    post-processing; stage times are the two peers' sums."""

    def __init__(self, threads: int = 0, peer_dir: str | os.PathLike | None = None):
        import onnxruntime as ort

        self.stack = PeerStack(peer_dir, threads)
        self.det_classes = DET_CLASSES
        self.seg_classes = ("background", "drivable", "lane")
        self.backend = type("PeerBackend", (), {"description": f"onnxruntime {ort.__version__} CPU, 2 peer models"})
        self.name = "peers (TwinLiteNet + NanoDet-m)"

    def __call__(self, frame: Frame) -> FrameResult:
        seg_net, det_net = self.stack.seg, self.stack.det
        image = frame.image
        t0 = time.perf_counter()
        seg_in = seg_net.preprocess(image)
        det_in, lb = det_net.preprocess(image)
        t1 = time.perf_counter()
        seg_out, det_out = seg_net.run(seg_in), det_net.run(det_in)
        t2 = time.perf_counter()
        seg, det = seg_net.finish(seg_out, frame.size_hw), det_net.finish(det_out, lb)
        t3 = time.perf_counter()
        h, w = frame.size_hw
        return FrameResult(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            frame_size=frame.size_hw,
            detections=Detections(det.boxes, det.scores, det.labels.astype(np.int32)),
            det_class_names=self.det_classes,
            seg=SegMap(seg.seg, self.seg_classes),  # already at frame size
            letterbox=Letterbox((h, w), (h, w), (0, 0, w, h), 1.0, 0, 0),
            timings_ms={"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3},
        )

    def fuse(self, result: FrameResult) -> FrameResult:
        """The peers have no fusion stage: results pass through."""
        return result

    def process_batch(self, frames: Sequence[Frame], fuse: bool = True) -> list[FrameResult]:
        return [self(f) for f in frames]  # the peer exports take batch 1
