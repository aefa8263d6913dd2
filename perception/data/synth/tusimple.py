"""Synthetic clips written in TuSimple's layout: ``perception synth --format tusimple``.

Each clip (the same clips ``perception synth --clips K`` renders for a seed) becomes
``clips/<clip name>/<1..N>.jpg``; ``label_data.json`` gets one TuSimple label line per labelled frame
(``perception.data.tusimple``), so ``perception eval --data tusimple:DIR`` reads it back.

- Labelled frames: the last frame of each clip (``label_frames="last"``, as TuSimple labels the 20th frame
  of its 20-frame clips; 20 frames per clip is the command's default for this format), or every frame
  (``"all"``).
- Rows (``h_samples``): every 10 px from 160/720 of the height to the bottom (``tusimple_h_samples``):
  TuSimple's 160..710 at 720 rows, 80..350 at 360.
- Lanes: the painted lines of the frame's truth (``meta["lanes"]``, style not ``none``), each projected
  from its 3D polyline in the vehicle frame (densified to ``step_m``) through the frame's camera
  (``meta["camera"]``: intrinsics, mounting, and the lens distortion the renderer applied, so x is where
  the line is in the recorded image), sampled at the rows by linear interpolation. x is -2 where the line
  is outside the image, beyond its rendered range (1 m to 100 m ahead) or under the ego car's bonnet. A
  line needs at least 2 rows in the image to count; at most ``max_lanes`` (5, TuSimple's most) are kept, the
  laterally nearest to the camera, then ordered left to right by x at their bottom-most common row.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from perception.camera_model import camera_from_dict
from perception.data.synth.effects import hood_mask
from perception.data.synth.generate import SynthOptions, _clip_frames, _in_order
from perception.data.tusimple import ABSENT, label_line, order_left_to_right, polyline_to_tusimple, tusimple_h_samples
from perception.progress import Progress

LABEL_FILE = "label_data.json"
MAX_LANES = 5
LABEL_FRAMES = ("last", "all")


def _densify(points: np.ndarray, step_m: float) -> np.ndarray:
    """float64 [N, 3] polyline → points every ``step_m`` along it (ends kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.unique(np.concatenate([np.arange(0.0, s[-1], step_m), [s[-1]]]))
    return np.column_stack([np.interp(t, s, points[:, k]) for k in range(3)])


def synth_tusimple_lanes(
    meta: dict,
    image_hw: tuple[int, int],
    h_samples: np.ndarray,
    max_lanes: int = MAX_LANES,
    step_m: float = 0.25,
) -> list[np.ndarray]:
    """A synthetic frame's painted lines as TuSimple lanes (module docstring).

    Args:
        meta: the frame's meta (``camera``, ``lanes`` with ``points_vehicle_m`` and ``style``, ``effects.hood``).
        image_hw: (height, width) of the image. h_samples: int [R] rows.

    Returns:
        float64 [R] x per lane (-2 absent), left to right.
    """
    h, w = image_hw
    camera = camera_from_dict(meta["camera"], "synthetic meta camera")
    hood = float(meta.get("effects", {}).get("hood", 0.0) or 0.0)
    bonnet = hood_mask(h, w, hood) if hood > 0 else None
    rows = np.asarray(h_samples, np.float64)
    found = []
    for line in meta["lanes"]:
        pts = np.asarray(line["points_vehicle_m"], np.float64).reshape(-1, 3)
        if line.get("style", "none") == "none" or len(pts) < 2:
            continue
        uv, depth = camera.project(_densify(pts, step_m), distort=bool(len(camera.dist_coeffs)))
        ok = (depth > 0) & np.isfinite(uv).all(1)
        if ok.sum() < 2:
            continue
        xs = polyline_to_tusimple(uv[ok], rows, w)
        if bonnet is not None:
            on = xs >= 0
            yi = np.clip(rows[on].astype(np.int64), 0, h - 1)
            xi = np.clip(np.round(xs[on]).astype(np.int64), 0, w - 1)
            hidden = np.zeros_like(on)
            hidden[on] = bonnet[yi, xi]
            xs[hidden] = ABSENT
        if (xs >= 0).sum() >= 2:
            found.append((abs(float(pts[0, 1])), xs))
    found.sort(key=lambda item: item[0])
    lanes = [xs for _, xs in found[:max_lanes]]
    return [lanes[i] for i in order_left_to_right(lanes, rows)]


def write_tusimple_synth(
    out_dir: str | Path,
    clips: int,
    clip_frames: int = 20,
    seed: int = 0,
    fps: float = 10.0,
    opts: SynthOptions | None = None,
    workers: int = 1,
    progress: bool = False,
    label_frames: str = "last",
    jpeg_quality: int = 95,
) -> dict:
    """Render ``clips`` clips of ``clip_frames`` frames and write them in TuSimple's layout (module docstring).

    Clip c depends only on (seed, c), as in ``write_synth_dataset``, so any number of ``workers`` gives the
    same output. Returns counts (clips, images, labelled frames, lanes) and the speed, writing included.
    """
    if label_frames not in LABEL_FRAMES:
        raise ValueError(f"label_frames must be one of {list(LABEL_FRAMES)}, got {label_frames!r}")
    if clips < 1 or clip_frames < 1:
        raise ValueError(f"the TuSimple layout needs clips >= 1 and clip_frames >= 1, got {clips}, {clip_frames}")
    opts = opts or SynthOptions()
    out = Path(out_dir)
    h_samples = tusimple_h_samples(opts.size[1])
    tasks = [(_clip_frames, c, clip_frames, seed, fps, opts) for c in range(clips)]
    t0 = time.perf_counter()
    done = labelled = n_lanes = 0
    bar = Progress(clips * clip_frames, enabled=progress)
    with open(out / LABEL_FILE, "w", encoding="utf-8") as labels:
        for samples in _in_order(tasks, workers):
            for t, sample in enumerate(samples):
                raw_file = f"clips/{sample.meta['clip']}/{t + 1}.jpg"
                path = out / raw_file
                path.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(path), sample.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                    raise OSError(f"{path}: cannot write the image")
                done += 1
                if label_frames == "all" or t == len(samples) - 1:
                    lanes = synth_tusimple_lanes(sample.meta, sample.image.shape[:2], h_samples)
                    labels.write(label_line(raw_file, lanes, h_samples) + "\n")
                    labels.flush()
                    labelled += 1
                    n_lanes += len(lanes)
            bar.update(done)
    elapsed = time.perf_counter() - t0
    bar.finish()
    return {
        "format": "tusimple",
        "counts": {"clips": clips, "images": done, "labelled": labelled, "lanes": n_lanes},
        "h_samples": [int(h_samples[0]), int(h_samples[-1]), int(h_samples[1] - h_samples[0])],
        "frames": done,
        "seconds": round(elapsed, 2),
        "fps": round(done / elapsed, 2),
    }
