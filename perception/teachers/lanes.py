"""TwinLiteNet+ (BDD100K, MIT licence) as a teacher for drivable road and lane lines.

``twinlitenetplus_{small,nano}_bdd100k_384x640.onnx`` from ../shared/weights: input ``images`` float32
[1, 3, 384, 640], RGB / 255, the frame resized to 640x384 without keeping its aspect (bilinear). Outputs
``da`` (drivable area) and ``ll`` (lane lines), float32 [1, 2, 384, 640] each; argmax over dim 1, 1 = yes.
The class masks are resized back to the frame with nearest-neighbour sampling about pixel centres.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from perception.frames import Prediction
from perception.teachers.detectors import onnx_session, weight_path

TWINLITENETPLUS_FILES = {
    "small": "twinlitenetplus_small_bdd100k_384x640.onnx",
    "nano": "twinlitenetplus_nano_bdd100k_384x640.onnx",
}
LANE_TEACHERS = ("twinlitenetplus",)


class TwinLiteNetPlus:
    """Drivable area and lane lines; ``masks(frame)`` -> two bool masks, ``predict(frame)`` -> seg Prediction.

    Args:
        path: the ONNX file (None: ``variant`` from $PERCEPTION_WEIGHTS or ../shared/weights).
        variant: "small" (123 k parameters, default) or "nano" (34 k).
        threads: ONNX Runtime intra-op threads (0: one per core).
    """

    name = "twinlitenetplus"
    licence = "MIT (TwinLiteNet+)"
    input_hw = (384, 640)
    seg_classes = ("background", "drivable", "lane")
    det_classes: tuple[str, ...] = ()

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        variant: str = "small",
        threads: int = 0,
        weights_dir: str | os.PathLike | None = None,
    ):
        if variant not in TWINLITENETPLUS_FILES:
            raise ValueError(f"variant must be one of {list(TWINLITENETPLUS_FILES)}, got {variant!r}")
        self.path = Path(path) if path else weight_path(TWINLITENETPLUS_FILES[variant], weights_dir)
        self.session = onnx_session(self.path, threads)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] BGR -> float32 [1, 3, 384, 640] RGB / 255 (plain resize)."""
        h, w = self.input_hw
        img = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_LINEAR)
        return (cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]

    def masks(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(drivable bool [H, W], lane lines bool [H, W]) in frame pixels for a uint8 [H, W, 3] BGR frame."""
        da, ll = self.session.run(["da", "ll"], {"images": self.preprocess(frame_bgr)})
        h, w = frame_bgr.shape[:2]

        def to_frame(logits: np.ndarray) -> np.ndarray:
            m = (logits[0].argmax(0) == 1).astype(np.uint8)
            return cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)

        return to_frame(da), to_frame(ll)

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        """seg uint8 [H, W]: 0 background, 1 drivable, 2 lane (lane wins where both fire); no boxes."""
        drivable, lane = self.masks(frame_bgr)
        seg = np.zeros(drivable.shape, np.uint8)
        seg[drivable] = 1
        seg[lane] = 2
        return Prediction(seg, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
