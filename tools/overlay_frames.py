"""Overlays of a model on chosen frames, tiled into one PNG, to look at what it does on frames it never trained on.

    python tools/overlay_frames.py --model models/default.onnx --out docs/overlays.png \
        ../shared/data/frames/udacity_highway/test1.jpg ../shared/data/clips/solidWhiteRight.mp4@100

An input is an image file or VIDEO@FRAME; ``--night`` also shows each frame through the training night
augmentation (``perception.data.augment.NightDrive``), a stand-in where no real night frame is at hand.
"""

from __future__ import annotations

import argparse
import dataclasses

import cv2
import numpy as np

from perception.config import FusionConfig, PipelineConfig
from perception.frames import Frame
from perception.pipeline import build_pipeline
from perception.viz import draw_scene


def read(spec: str) -> np.ndarray:
    path, _, index = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if index:
        cap = cv2.VideoCapture(path)
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{path}: cannot read frame {index}")
        return frame
    frame = cv2.imread(spec)
    if frame is None:
        raise SystemExit(f"{spec}: not an image")
    return frame


def night(frame: np.ndarray, seed: int) -> np.ndarray:
    from perception.data.augment import NightDrive

    t = NightDrive(p=1.0)
    t.set_random_seed(seed)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(t(image=rgb)["image"], cv2.COLOR_RGB2BGR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files or VIDEO@FRAME")
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--score", type=float, help="boxes shown above this score (default: the model's display threshold)")
    ap.add_argument("--width", type=int, default=640, help="tile width in pixels")
    ap.add_argument("--night", action="store_true", help="also each frame through the night augmentation")
    args = ap.parse_args()
    cfg = PipelineConfig(model=args.model, fusion=FusionConfig(enabled=False))
    cfg = dataclasses.replace(cfg, postprocess=dataclasses.replace(cfg.postprocess, score_threshold=args.score))
    pipeline = build_pipeline(cfg)
    tiles = []
    for i, spec in enumerate(args.inputs):
        frames = [read(spec)]
        if args.night:
            frames.append(night(frames[0], i))
        for frame in frames:
            shown = draw_scene(frame, pipeline(Frame(index=i, timestamp_s=0.0, image=frame)))
            scale = args.width / shown.shape[1]
            tiles.append(cv2.resize(shown, (args.width, round(shown.shape[0] * scale)), interpolation=cv2.INTER_AREA))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.zeros((h - t.shape[0], args.width, 3), np.uint8)]) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (len(tiles) % 2)
    grid = np.vstack([np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles), 2)])
    if not cv2.imwrite(args.out, grid):
        raise SystemExit(f"{args.out}: cannot write")
    print(f"{len(tiles)} tiles -> {args.out}")


if __name__ == "__main__":
    main()
