"""COCO-pretrained detectors used as teachers: they label real frames for training (pseudo-labels) and
are scored zero-shot by ``perception eval --model teacher:NAME``. Weights from ../shared/weights (see its
README.md for sources and licences); runtime dependencies only (numpy, OpenCV, ONNX Runtime).

Each adapter has ``detect_coco(frame_bgr) -> CocoDetections`` (COCO's 80 classes, before any mapping)
and ``predict(frame_bgr) -> Prediction`` (the project's classes, as ``perception eval`` scores peers).
Boxes are float32 [N, 4] x1, y1, x2, y2 in frame pixels, clipped to the frame.

- ``yolox`` (YOLOX-Nano, Megvii, Apache-2.0), ``yolox_nano_coco_416.onnx``: input ``images`` float32
  [1, 3, 416, 416], BGR 0..255 without normalisation, the frame letterboxed to the TOP-LEFT corner
  (scale r = min(416 / h, 416 / w), padding 114). Output [1, 3549, 85], rows over the stride 8, 16, 32
  grids (52², 26², 13²), row-major, cell (x, y): cx = (o0 + x) s, cy = (o1 + y) s, w = exp(o2) s,
  h = exp(o3) s in input pixels; o4 objectness and o5.. class probabilities already sigmoid. As upstream
  (``yolox.utils.postprocess``, COCO evaluation settings): each anchor takes its best class, score =
  objectness x that class's probability, class-aware NMS at IoU 0.65.
- ``picodet`` (PP-PicoDet-XS, PaddleDetection, Apache-2.0), ``picodet_xs_coco_320.onnx``: input ``image``
  float32 [1, 3, 320, 320], RGB / 255 then ImageNet mean / std, the frame resized to 320x320 without
  keeping its aspect (bicubic, as PaddleDetection's ``Resize interp: 2``), and ``scale_factor``
  [[320 / h, 320 / w]]. The graph runs its own NMS (per class, IoU 0.6, score >= 0.025: read from the
  graph; a lower ``score_threshold`` cannot bring back what it cut, at most 100 boxes) and returns rows
  ``class, score, x1, y1, x2, y2`` in frame pixels (rows with class < 0 are padding).
- ``yolofastest`` (Yolo-Fastest-1.1-XL, Darknet, public domain), ``yolo_fastest_1.1_xl_coco_320.cfg`` +
  ``.weights``: input 320x320 RGB / 255 (``cv2.dnn.blobFromImage``, plain resize, bilinear); run by
  ``perception.teachers.darknet`` (OpenCV 5 dropped ``cv2.dnn.readNetFromDarknet``). Rows cx, cy, w, h
  as fractions of the frame, objectness, class probabilities; best class per row, score = objectness x
  probability, class-aware NMS at IoU 0.45 (Darknet's default).

Class mapping (``TEACHER_COCO_TO_DET``): car, bus, truck -> car; person -> pedestrian; bicycle, motorcycle
-> cyclist; stop sign -> traffic_sign. COCO has no general sign class; a dataset whose sign class covers
traffic lights (CamVid's SignSymbol) may pass ``TEACHER_COCO_TO_DET_WITH_LIGHTS``. COCO boxes a bicycle
and its rider apart, the project's cyclist (like CamVid's Bicyclist) is both: with ``riders=True`` (the
default) a person box sitting on a bicycle or motorcycle box is merged with it into one cyclist box
(``merge_riders``); without it a rider is a "pedestrian" and the bicycle alone a "cyclist" (measured on
CamVid val in docs/teachers.md: cyclist AP50 0.04 -> 0.30 for YOLOX, pedestrian 0.17 -> 0.22).

Test-time augmentation (``tta=True``): three views of the frame, each run through the network, mapped
back to frame pixels and fused with weighted box fusion (``perception.teachers.box_fusion``, one "model"
per view, per COCO class): (1) the frame, (2) the frame flipped left-right, (3) the frame ``tta_zoom``
(1.6) times larger, as a 2 x 2 grid of overlapping tiles each 1 / zoom of the frame's width and height,
so each tile reaches the network at zoom times the scale of the whole frame (the fixed-size ONNX inputs
rule out a larger letterbox); a tile box touching an edge
the tile shares with a neighbour (within 2 px) is dropped: its object is cut there and is seen whole in
another view. Boxes of one object from two tiles fuse inside the tiles view (they count as one view).
The tiles cost four network runs, so TTA costs six runs per frame. docs/teachers.md gives what it buys
and why the zoom is 1.6 (1.3 and 1.6 measured; the tiles bring nearly all of the gain, the flip little).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.errors import ConfigError
from perception.frames import Letterbox, Prediction
from perception.peers import DET_CLASSES, cpu_session, external_model_path
from perception.postprocess.decode import BOX_ENCODINGS, anchor_centers
from perception.postprocess.nms import nms
from perception.preprocess import letterbox_geometry
from perception.teachers.box_fusion import weighted_boxes_fusion

WEIGHTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
YOLOX_FILE = "yolox_nano_coco_416.onnx"
PICODET_FILE = "picodet_xs_coco_320.onnx"
YOLOFASTEST_CFG = "yolo_fastest_1.1_xl_coco_320.cfg"
YOLOFASTEST_WEIGHTS = "yolo_fastest_1.1_xl_coco_320.weights"

NUM_COCO_CLASSES = 80
# COCO id -> index into DET_CLASSES (car, pedestrian, cyclist, traffic_sign)
TEACHER_COCO_TO_DET = {2: 0, 5: 0, 7: 0, 0: 1, 1: 2, 3: 2, 11: 3}
TEACHER_COCO_TO_DET_WITH_LIGHTS = {**TEACHER_COCO_TO_DET, 9: 3}
COCO_PERSON = 0
COCO_RIDDEN = (1, 3)  # bicycle, motorcycle
RIDER_MIN_SCORE = 0.2
RIDER_INSIDE = 0.7  # a person box this much inside a vehicle box rides it (a rider merged already)
TTA_EDGE_MARGIN_PX = 2.0
TTA_FUSION_IOU = 0.55


def weight_path(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of a teacher weight file ($PERCEPTION_WEIGHTS, else ../shared/weights next to the repository)."""
    return external_model_path(name, weights_dir, "PERCEPTION_WEIGHTS", WEIGHTS_DIR, "teacher weights")


def onnx_session(path: Path, threads: int):
    return cpu_session(path, threads, "teacher model")


@dataclass(frozen=True)
class CocoDetections:
    """A teacher's raw detections before class mapping.

    Attributes:
        boxes: float32 [N, 4] x1, y1, x2, y2 in frame pixels.
        scores: float32 [N] in [0, 1].
        labels: int64 [N] COCO class ids, 0..79 (person 0, bicycle 1, car 2, motorcycle 3, bus 5, truck 7,
            traffic light 9, stop sign 11).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.dtype != np.float32 or self.boxes.shape != (n, 4):
            raise ValueError(
                f"CocoDetections.boxes must be float32 [{n}, 4], got {self.boxes.dtype} {self.boxes.shape}"
            )
        if self.scores.dtype != np.float32 or self.scores.shape != (n,):
            raise ValueError(f"CocoDetections.scores must be float32 [N], got {self.scores.dtype} {self.scores.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (n,):
            raise ValueError(f"CocoDetections.labels must be int64 [{n}], got {self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def make(cls, boxes, scores, labels) -> CocoDetections:
        """From array-likes: boxes [N, 4], scores [N], labels [N] (cast to float32, float32, int64)."""
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
            np.asarray(labels, np.int64).reshape(-1),
        )

    def select(self, index: np.ndarray) -> CocoDetections:
        return CocoDetections(self.boxes[index], self.scores[index], self.labels[index])


def to_prediction(dets: CocoDetections, class_map: dict[int, int], iou_threshold: float | None = None) -> Prediction:
    """Keep the COCO classes ``class_map`` lists and relabel them (index into DET_CLASSES); by score, descending.

    With ``iou_threshold``, a class-aware NMS then runs on the project classes: two COCO classes that map to
    one project class (a car and a truck box on one vehicle) leave one box, not a duplicate.

    Returns a Prediction with seg None, boxes float32 [N, 4] frame pixels, scores float32 [N], labels int64 [N].
    """
    keep = np.flatnonzero(np.isin(dets.labels, np.array(sorted(class_map), np.int64)))
    keep = keep[np.argsort(-dets.scores[keep], kind="stable")]
    labels = np.array([class_map[int(c)] for c in dets.labels[keep]], np.int64)
    boxes, scores = dets.boxes[keep], dets.scores[keep]
    if iou_threshold is not None and len(keep):
        sel = nms(boxes, scores, iou_threshold, labels=labels)
        boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
    return Prediction(None, boxes.copy(), scores.copy(), labels)


def rider_pairs(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    person_labels: tuple[int, ...],
    vehicle_labels: tuple[int, ...],
    min_score: float = RIDER_MIN_SCORE,
) -> list[tuple[int, int]]:
    """(person index, vehicle index) pairs where a person rides a bicycle or motorcycle.

    A pair matches when both scores are >= ``min_score`` and either the person box sits on the vehicle
    box (they overlap vertically, the person's top and centre are above the vehicle's, and their
    horizontal overlap is at least half the narrower box's width) or at least ``RIDER_INSIDE`` of the
    person box lies inside the vehicle box (a rider already merged into it). Pairs are taken greedily by
    descending summed score, each box at most once.

    Args:
        boxes: float [N, 4] x1, y1, x2, y2 (any frame). scores: float [N]. labels: int [N].
        person_labels / vehicle_labels: the label values of persons and of ridden vehicles.
    """
    person = np.flatnonzero(np.isin(labels, person_labels) & (scores >= min_score))
    vehicle = np.flatnonzero(np.isin(labels, vehicle_labels) & (scores >= min_score))
    if not len(person) or not len(vehicle):
        return []
    p, v = boxes[person][:, None].astype(np.float64), boxes[vehicle][None].astype(np.float64)
    overlap_x = np.minimum(p[..., 2], v[..., 2]) - np.maximum(p[..., 0], v[..., 0])
    overlap_y = np.minimum(p[..., 3], v[..., 3]) - np.maximum(p[..., 1], v[..., 1])
    narrower = np.minimum(p[..., 2] - p[..., 0], v[..., 2] - v[..., 0])
    on_top = (overlap_x >= 0.5 * narrower) & (overlap_y > 0)
    on_top &= (p[..., 1] < v[..., 1]) & (p[..., 1] + p[..., 3] < v[..., 1] + v[..., 3])
    area = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    inside = np.clip(overlap_x, 0, None) * np.clip(overlap_y, 0, None) >= RIDER_INSIDE * area
    pi, vi = np.nonzero(on_top | (inside & (area > 0)))
    order = np.argsort(-(scores[person[pi]] + scores[vehicle[vi]]), kind="stable")
    pairs, used = [], set()
    for a, b in zip(person[pi[order]].tolist(), vehicle[vi[order]].tolist(), strict=True):
        if a not in used and b not in used:
            used |= {a, b}
            pairs.append((a, b))
    return pairs


def union_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest box x1, y1, x2, y2 holding boxes ``a`` and ``b`` (float32 [4])."""
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])]).astype(np.float32)


def merge_riders(dets: CocoDetections, min_score: float = RIDER_MIN_SCORE) -> CocoDetections:
    """Riders: a person box on a bicycle or motorcycle box (``rider_pairs``) becomes one box around both,
    as the vehicle's class (the project's cyclist, like CamVid's Bicyclist, is rider and bicycle together).

    The merged box is the union (frame pixels), its score the mean of the two, its label the vehicle's
    COCO id; the person box is removed. A new value is returned, ``dets`` is not modified.
    """
    pairs = rider_pairs(dets.boxes, dets.scores, dets.labels, (COCO_PERSON,), COCO_RIDDEN, min_score)
    if not pairs:
        return dets
    boxes, scores = dets.boxes.copy(), dets.scores.copy()
    for a, b in pairs:
        boxes[b] = union_box(dets.boxes[a], dets.boxes[b])
        scores[b] = (dets.scores[a] + dets.scores[b]) / 2
    keep = np.setdiff1d(np.arange(len(dets)), [a for a, _ in pairs])
    return CocoDetections(boxes[keep], scores[keep], dets.labels[keep].copy())


def clip_boxes(boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """float32 [N, 4] boxes clipped to a frame of (H, W) pixels (a new array)."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    np.clip(out[:, 0::2], 0, frame_hw[1], out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, frame_hw[0], out=out[:, 1::2])
    return out


def best_class_nms(
    boxes: np.ndarray, class_scores: np.ndarray, score_threshold: float, iou_threshold: float, max_dets: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best class per row, score threshold (``>=``), class-aware NMS, at most ``max_dets`` boxes.

    Args:
        boxes: float [A, 4] x1, y1, x2, y2 (any frame). class_scores: float [A, C] final per-class scores.
    Returns:
        (boxes float32 [K, 4], scores float32 [K], labels int64 [K]) by descending score.
    """
    labels = class_scores.argmax(1)
    scores = class_scores[np.arange(len(labels)), labels]
    cand = np.flatnonzero(scores >= score_threshold)
    keep = cand[nms(boxes[cand], scores[cand], iou_threshold, labels=labels[cand], max_output=max_dets)]
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep].astype(np.int64)


def decode_yolox(output: np.ndarray, input_hw: tuple[int, int], strides=(8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX grid outputs -> boxes and per-class scores (module docstring for the formulas).

    Args:
        output: float32 [A, 5 + C], rows over the stride grids in order, each row-major (index y * W_s + x),
            A = sum over strides of (H / s) * (W / s).
        input_hw: (H, W) of the network input.
    Returns:
        (boxes float32 [A, 4] x1, y1, x2, y2 in input pixels, scores float32 [A, C] = objectness x class).
    """
    ih, iw = input_hw
    centers, stride = anchor_centers([(ih // s, iw // s) for s in strides], strides)
    out = np.asarray(output, np.float32)
    if out.ndim != 2 or out.shape[0] != len(centers) or out.shape[1] < 6:
        raise ValueError(f"YOLOX output must be [{len(centers)}, 5 + classes], got {list(out.shape)}")
    dist = BOX_ENCODINGS["yolox_xywh"](out[:, :4].T) * stride  # l, t, r, b [4, A], input pixels
    cx, cy = centers[:, 0], centers[:, 1]
    boxes = np.stack([cx - dist[0], cy - dist[1], cx + dist[2], cy + dist[3]], 1)
    return boxes.astype(np.float32), (out[:, 4:5] * out[:, 5:]).astype(np.float32)


def tile_grid(frame_hw: tuple[int, int], zoom: float) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles (x0, y0, x1, y1) in frame pixels, each ceil(W / zoom) x ceil(H / zoom), covering the frame.

    ceil(zoom) tiles per axis (2 for 1 < zoom <= 2), spread evenly from one edge to the other.
    """
    if zoom <= 1:
        raise ValueError(f"tta zoom must be > 1, got {zoom}")
    h, w = frame_hw
    tw, th = math.ceil(w / zoom), math.ceil(h / zoom)
    n = math.ceil(zoom)
    xs = [round(i * (w - tw) / (n - 1)) for i in range(n)]
    ys = [round(i * (h - th) / (n - 1)) for i in range(n)]
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


class Teacher:
    """What the three adapters share: thresholds, class map, TTA, ``detect_coco`` and ``predict``.

    Args:
        score_threshold: keep detections with score >= this (0.001 for mAP: the whole ranking).
        iou_threshold: class-aware NMS IoU (None: the adapter's upstream value).
        max_dets: at most this many detections per frame (highest scores first).
        class_map: COCO id -> index into DET_CLASSES (None: ``TEACHER_COCO_TO_DET``).
        tta: test-time augmentation (module docstring). tta_zoom: scale of the tiled view (> 1, at most 2
            for tiles that overlap).
        riders: merge a person on a bicycle / motorcycle into one cyclist box (``merge_riders``).
    """

    name = "teacher"
    licence = ""
    files: tuple[str, ...] = ()
    default_iou = 0.5
    seg_classes: tuple[str, ...] = ()
    det_classes: tuple[str, ...] = DET_CLASSES

    def __init__(
        self,
        score_threshold: float = 0.05,
        iou_threshold: float | None = None,
        max_dets: int = 300,
        class_map: dict[int, int] | None = None,
        tta: bool = False,
        tta_zoom: float = 1.6,
        riders: bool = True,
    ):
        if tta and not 1 < tta_zoom <= 2:
            raise ValueError(f"tta_zoom must be in (1, 2] (overlapping 2 x 2 tiles), got {tta_zoom}")
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(self.default_iou if iou_threshold is None else iou_threshold)
        self.max_dets = int(max_dets)
        self.class_map = dict(TEACHER_COCO_TO_DET if class_map is None else class_map)
        self.tta = bool(tta)
        self.tta_zoom = float(tta_zoom)
        self.riders = bool(riders)
        if self.tta:
            self.name = f"{self.name}+tta"

    def detect_image(self, image_bgr: np.ndarray) -> CocoDetections:
        """One network run on ``image_bgr`` (uint8 [H, W, 3] BGR); boxes in its pixels. Subclasses implement."""
        raise NotImplementedError

    def detect_coco(self, frame_bgr: np.ndarray) -> CocoDetections:
        """COCO-class detections of one frame (uint8 [H, W, 3] BGR), with TTA when enabled; frame pixels."""
        if not self.tta:
            return self.detect_image(frame_bgr)
        return self._detect_tta(frame_bgr)

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        """Detections in the project's classes (``class_map``), frame pixels, seg None.

        Riders are merged first (``riders``); then the COCO classes that map to one project class go through
        one more class-aware NMS (``iou_threshold``) on that class.
        """
        dets = self.detect_coco(frame_bgr)
        if self.riders:
            dets = merge_riders(dets)
        return to_prediction(dets, self.class_map, self.iou_threshold)

    def _detect_tta(self, frame: np.ndarray) -> CocoDetections:
        return self.fuse_views(self.tta_views(frame), frame.shape[:2])

    def tta_views(self, frame: np.ndarray) -> list[CocoDetections]:
        """The three TTA views' detections in frame pixels: [frame, flipped frame, zoomed tiles]."""
        h, w = frame.shape[:2]
        views = [self.detect_image(frame)]
        flipped = self.detect_image(np.ascontiguousarray(frame[:, ::-1]))
        fb = flipped.boxes.copy()
        fb[:, 0], fb[:, 2] = w - flipped.boxes[:, 2], w - flipped.boxes[:, 0]
        views.append(CocoDetections(fb, flipped.scores, flipped.labels))
        parts = []
        for x0, y0, x1, y1 in tile_grid((h, w), self.tta_zoom):
            d = self.detect_image(np.ascontiguousarray(frame[y0:y1, x0:x1]))
            b = d.boxes + np.array([x0, y0, x0, y0], np.float32)
            m = TTA_EDGE_MARGIN_PX
            cut = np.zeros(len(b), bool)
            if x0 > 0:
                cut |= b[:, 0] <= x0 + m
            if x1 < w:
                cut |= b[:, 2] >= x1 - m
            if y0 > 0:
                cut |= b[:, 1] <= y0 + m
            if y1 < h:
                cut |= b[:, 3] >= y1 - m
            parts.append(CocoDetections(b[~cut], d.scores[~cut], d.labels[~cut]))
        views.append(
            CocoDetections.make(
                np.concatenate([p.boxes for p in parts]),
                np.concatenate([p.scores for p in parts]),
                np.concatenate([p.labels for p in parts]),
            )
        )
        return views

    def fuse_views(self, views: list[CocoDetections], frame_hw: tuple[int, int]) -> CocoDetections:
        """WBF of several views' detections (one model per view, per COCO class), clipped to the frame."""
        fused = weighted_boxes_fusion(
            [v.boxes for v in views],
            [v.scores for v in views],
            [v.labels for v in views],
            iou_thr=TTA_FUSION_IOU,
            skip_box_thr=self.score_threshold,
        )
        keep = np.flatnonzero(fused.scores >= self.score_threshold)[: self.max_dets]
        return CocoDetections(clip_boxes(fused.boxes[keep], frame_hw), fused.scores[keep], fused.labels[keep])


class YoloxNano(Teacher):
    """YOLOX-Nano (COCO) as a teacher (module docstring: input, output, decoding)."""

    name = "yolox"
    licence = "Apache-2.0 (Megvii YOLOX)"
    files = (YOLOX_FILE,)
    default_iou = 0.65
    input_hw = (416, 416)
    strides = (8, 16, 32)
    pad_value = 114.0

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 0, weights_dir=None, **kw):
        super().__init__(**kw)
        self.path = Path(path) if path else weight_path(YOLOX_FILE, weights_dir)
        self.session = onnx_session(self.path, threads)

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """uint8 [H, W, 3] BGR -> (float32 [1, 3, 416, 416] BGR 0..255 top-left letterbox, Letterbox)."""
        lb = letterbox_geometry(image_bgr.shape[:2], self.input_hw, align="top-left")
        ch, cw = lb.content_hw
        canvas = np.full((*self.input_hw, 3), self.pad_value, np.float32)
        canvas[:ch, :cw] = cv2.resize(image_bgr, (cw, ch), interpolation=cv2.INTER_LINEAR)
        return canvas.transpose(2, 0, 1)[None], lb

    def detect_image(self, image_bgr: np.ndarray) -> CocoDetections:
        inputs, lb = self.preprocess(image_bgr)
        (out,) = self.session.run(["output"], {"images": inputs})
        boxes, scores = decode_yolox(out[0], self.input_hw, self.strides)
        b, s, lab = best_class_nms(boxes, scores, self.score_threshold, self.iou_threshold, self.max_dets)
        return CocoDetections(lb.boxes_to_frame(b), s, lab)


class PicoDetXS(Teacher):
    """PP-PicoDet-XS (COCO) as a teacher; NMS runs inside its graph (module docstring)."""

    name = "picodet"
    licence = "Apache-2.0 (PaddleDetection PP-PicoDet)"
    files = (PICODET_FILE,)
    default_iou = 0.6  # fixed inside the graph; listed for the record
    input_hw = (320, 320)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 0, weights_dir=None, **kw):
        super().__init__(**kw)
        self.path = Path(path) if path else weight_path(PICODET_FILE, weights_dir)
        self.session = onnx_session(self.path, threads)
        self.output = self.session.get_outputs()[0].name

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] BGR -> (float32 [1, 3, 320, 320] normalised RGB, scale_factor float32 [1, 2])."""
        h, w = image_bgr.shape[:2]
        ih, iw = self.input_hw
        img = cv2.resize(image_bgr, (iw, ih), interpolation=cv2.INTER_CUBIC)
        img = (cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0 - self.mean) / self.std
        return img.transpose(2, 0, 1)[None].astype(np.float32), np.array([[ih / h, iw / w]], np.float32)

    def detect_image(self, image_bgr: np.ndarray) -> CocoDetections:
        image, scale = self.preprocess(image_bgr)
        (rows,) = self.session.run([self.output], {"image": image, "scale_factor": scale})
        rows = np.asarray(rows, np.float32).reshape(-1, 6)
        ok = (rows[:, 0] >= 0) & (rows[:, 1] >= self.score_threshold) & np.isfinite(rows).all(1)
        rows = rows[ok]
        rows = rows[np.argsort(-rows[:, 1], kind="stable")][: self.max_dets]
        boxes = clip_boxes(rows[:, 2:6], image_bgr.shape[:2])
        return CocoDetections(boxes, rows[:, 1].copy(), rows[:, 0].astype(np.int64))


class YoloFastest(Teacher):
    """Yolo-Fastest-1.1-XL (COCO, Darknet) as a teacher, run by ``perception.teachers.darknet``."""

    name = "yolofastest"
    licence = "public domain (YOLO LICENSE v2, Yolo-Fastest)"
    files = (YOLOFASTEST_CFG, YOLOFASTEST_WEIGHTS)
    default_iou = 0.45
    input_hw = (320, 320)

    def __init__(
        self,
        cfg: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        threads: int = 0,
        weights_dir=None,
        **kw,
    ):
        from perception.teachers.darknet import DarknetNet

        super().__init__(**kw)
        cfg_path = Path(cfg) if cfg else weight_path(YOLOFASTEST_CFG, weights_dir)
        weights_path = Path(weights) if weights else weight_path(YOLOFASTEST_WEIGHTS, weights_dir)
        self.net = DarknetNet(cfg_path, weights_path)
        self.input_hw = self.net.input_hw

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] BGR -> float32 [1, 3, H_in, W_in] RGB / 255, plain (bilinear) resize."""
        ih, iw = self.input_hw
        return cv2.dnn.blobFromImage(image_bgr, 1 / 255.0, (iw, ih), swapRB=True, crop=False)

    def detect_image(self, image_bgr: np.ndarray) -> CocoDetections:
        h, w = image_bgr.shape[:2]
        rows = np.concatenate(self.net.forward(self.preprocess(image_bgr)), 0)
        # cx, cy, w, h are fractions of the input, which is the whole frame resized: fractions of the frame.
        size = np.array([w, h], np.float32)
        centre, extent = rows[:, 0:2] * size, rows[:, 2:4] * size
        boxes = np.concatenate([centre - extent / 2, centre + extent / 2], 1)
        scores = rows[:, 4:5] * rows[:, 5:]
        b, s, lab = best_class_nms(boxes, scores, self.score_threshold, self.iou_threshold, self.max_dets)
        return CocoDetections(clip_boxes(b, (h, w)), s, lab)


TEACHERS: dict[str, type[Teacher]] = {"yolox": YoloxNano, "picodet": PicoDetXS, "yolofastest": YoloFastest}


def parse_teacher_names(text: str) -> list[str]:
    """ "yolox, picodet" -> ["yolox", "picodet"]; ConfigError naming the unknown ones and the valid names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEACHERS]
    if unknown or not names:
        raise ConfigError(f"unknown teacher(s) {unknown or [text]} (valid: {', '.join(TEACHERS)})")
    return names


def build_teacher(name: str, threads: int = 0, weights_dir: str | os.PathLike | None = None, **kw) -> Teacher:
    """A teacher by name (``TEACHERS``); ConfigError listing the valid names for an unknown one.

    ``kw``: the ``Teacher`` options (score_threshold, iou_threshold, max_dets, class_map, tta, tta_zoom).
    """
    if name not in TEACHERS:
        raise ConfigError(f"unknown teacher {name!r} (valid: {', '.join(TEACHERS)})")
    return TEACHERS[name](threads=threads, weights_dir=weights_dir, **kw)
