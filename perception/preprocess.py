"""OpenCV preprocessing: optional undistortion and region of interest, then letterbox to the model size.

``Preprocessor.__call__`` returns the network input (uint8 [H, W, 3], the model's colour order) and the
``Letterbox`` geometry that maps results back to frame pixels. Geometry and undistortion maps are
computed once per frame size and reused, so a frame costs one resize (or one remap when undistorting:
undistortion and letterbox resampling are composed into a single map at the model's resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.errors import ConfigError
from perception.frames import Frame, Letterbox

ALIGNS = ("center", "top-left")


def letterbox_geometry(
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    roi_xywh: tuple[int, int, int, int] | None = None,
    align: str = "center",
) -> Letterbox:
    """Largest scale that fits the ROI into the input without distortion, padding split per ``align``."""
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {list(ALIGNS)}, got {align!r}")
    fh, fw = frame_hw
    ih, iw = input_hw
    x, y, w, h = roi_xywh if roi_xywh is not None else (0, 0, fw, fh)
    scale = min(ih / h, iw / w)
    nw, nh = min(iw, round(w * scale)), min(ih, round(h * scale))
    if align == "center":
        pad_x, pad_y = (iw - nw) // 2, (ih - nh) // 2
    else:
        pad_x, pad_y = 0, 0
    return Letterbox(
        frame_size=(fh, fw), input_size=(ih, iw), roi_xywh=(x, y, w, h), scale=scale, pad_x=pad_x, pad_y=pad_y
    )


@dataclass
class _SizePlan:
    letterbox: Letterbox
    maps: tuple[np.ndarray, np.ndarray] | None  # fixed-point remap for undistort+resize, or None
    passthrough: bool = False  # frame size == input size, no ROI, no undistortion, BGR


class Preprocessor:
    """Frame → (network input, Letterbox).

    Args:
        input_size: (H, W) of the network input.
        color: "BGR" or "RGB", the colour order the model's input expects.
        pad_value: grey level of the letterbox padding.
        align: "center" or "top-left" placement of the image inside the input.
        camera: camera model; needed for ``undistort``.
        undistort: remove lens distortion (boxes and masks are then in undistorted frame pixels).
        roi_xywh: crop of the (undistorted) frame fed to the network; None = the whole frame.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        color: str = "BGR",
        pad_value: int = 114,
        align: str = "center",
        camera: CameraModel | None = None,
        undistort: bool = False,
        roi_xywh: tuple[int, int, int, int] | None = None,
    ):
        if undistort and camera is None:
            raise ValueError("undistort needs a camera model (intrinsics and distortion)")
        if color not in ("BGR", "RGB"):
            raise ValueError(f"color must be 'BGR' or 'RGB', got {color!r}")
        if align not in ALIGNS:
            raise ValueError(f"align must be one of {list(ALIGNS)}, got {align!r}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.color = color
        self.pad_value = int(pad_value)
        self.align = align
        self.camera = camera
        self.undistort = undistort
        self.roi_xywh = roi_xywh
        self._plans: dict[tuple[int, int], _SizePlan] = {}

    def _plan(self, frame_hw: tuple[int, int]) -> _SizePlan:
        plan = self._plans.get(frame_hw)
        if plan is None:
            fh, fw = frame_hw
            if self.roi_xywh is not None:
                x, y, w, h = self.roi_xywh
                if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > fw or y + h > fh:
                    raise ConfigError(f"roi {self.roi_xywh} (x, y, w, h) does not fit in a {fw}x{fh} frame")
            lb = letterbox_geometry(frame_hw, self.input_size, self.roi_xywh, self.align)
            maps = self._undistort_maps(lb) if self.undistort else None
            passthrough = (
                maps is None and self.color == "BGR" and tuple(frame_hw) == self.input_size and self.roi_xywh is None
            )
            plan = self._plans[frame_hw] = _SizePlan(lb, maps, passthrough)
        return plan

    def _undistort_maps(self, lb: Letterbox) -> tuple[np.ndarray, np.ndarray]:
        """Remap tables from input pixels straight to distorted source pixels (undistort ∘ letterbox)."""
        fh, fw = lb.frame_size
        try:
            cam = self.camera.scaled_to(fw, fh)  # type: ignore[union-attr]
        except ValueError as err:
            raise ConfigError(str(err)) from err
        ch, cw = lb.content_hw
        x0, y0, _, _ = lb.roi_xywh
        # Pixel centres of the content area, expressed in undistorted frame pixels.
        u = (np.arange(cw, dtype=np.float64) + 0.5) / lb.scale - 0.5 + x0
        v = (np.arange(ch, dtype=np.float64) + 0.5) / lb.scale - 0.5 + y0
        uu, vv = np.meshgrid(u, v)
        k = cam.K
        # Undistorted pixel → normalised ray → distorted pixel (projectPoints applies the lens model).
        rays = np.stack([(uu - k[0, 2]) / k[0, 0], (vv - k[1, 2]) / k[1, 1], np.ones_like(uu)], -1).reshape(-1, 1, 3)
        src, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k, cam.D)
        src = src.reshape(ch, cw, 2).astype(np.float32)
        return cv2.convertMaps(src, None, cv2.CV_16SC2)

    def letterbox_for(self, frame_hw: tuple[int, int]) -> Letterbox:
        """The geometry this preprocessor uses for frames of size (H, W)."""
        return self._plan(tuple(frame_hw)).letterbox

    def __call__(self, frame: Frame | np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Frame (or uint8 [H, W, 3] BGR image) → (uint8 [H_in, W_in, 3] network input, Letterbox)."""
        image = frame.image if isinstance(frame, Frame) else frame
        plan = self._plan((image.shape[0], image.shape[1]))
        lb = plan.letterbox
        if plan.passthrough:  # the frame already is the input (whole-frame models): no copy
            return np.ascontiguousarray(image), lb
        ih, iw = self.input_size
        ch, cw = lb.content_hw
        out = np.empty((ih, iw, 3), dtype=np.uint8)
        # Fill only the padding bands, and let OpenCV write the content straight into the output when that
        # region is contiguous (no left/right padding): half the memory traffic of resize-then-copy.
        out[: lb.pad_y] = self.pad_value
        out[lb.pad_y + ch :] = self.pad_value
        out[:, : lb.pad_x] = self.pad_value
        out[:, lb.pad_x + cw :] = self.pad_value
        view = out[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw]
        direct = view.flags.c_contiguous and self.color == "BGR"
        dst = view if direct else None
        if plan.maps is not None:
            content = cv2.remap(
                image,
                plan.maps[0],
                plan.maps[1],
                cv2.INTER_LINEAR,
                dst=dst,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
        else:
            x, y, w, h = lb.roi_xywh
            crop = image[y : y + h, x : x + w]
            if (cw, ch) == (w, h):
                content = crop
                direct = False
            else:
                content = cv2.resize(crop, (cw, ch), dst=dst, interpolation=cv2.INTER_LINEAR)
        if self.color == "RGB":
            content = cv2.cvtColor(content, cv2.COLOR_BGR2RGB)
        if not direct:
            view[...] = content
        return out, lb
