"""Lane instances scored in TuSimple's format: ``perception eval --data tusimple:DIR``.

Each labelled frame runs through a lane predictor; for our models that is the same pipeline and scene
fusion ``perception run`` uses (``PipelineLanePredictor``), and the frame's lanes are ``Scene.lanes``
(``points_image``: each line's curve in frame pixels). A fake predictor returning known polylines plugs in
the same way (anything with ``name``, ``start_clip()`` and ``predict_lanes(frame)``).

Predicted TuSimple lanes: every polyline becomes x at the gt's ``h_samples`` by linear interpolation in y
(x = -2 outside the polyline's rows or outside the image), rounded to whole pixels; lanes with no point left
are dropped; the rest are ordered left to right by x at the bottom-most row they have in common
(``perception.data.tusimple.order_left_to_right``).

Fusion is stateful: frames of one clip (the folder of ``raw_file``) go through it in label order and a
new clip starts it afresh (``start_clip``). A frame's time stamp is its file number over ``fps`` (TuSimple
names frames 1.jpg .. 20.jpg; 20 frames/s), or its position in the clip when the name is not a number.

Scores (``perception/eval/lanes.py``): TuSimple accuracy / FP / FN exactly as its benchmark (thresholds in
the labels' pixels; the 200 ms run-time rule is not applied, frames over it are counted apart), and CULane
F1 on lanes drawn 30 px wide at the image's size. ``tusimple_predictions.json`` gets one line per frame in
TuSimple's submission format: ``{"raw_file": ..., "lanes": [[x at each h_sample], ...], "run_time": ms}``,
with ``run_time`` the frame's wall time through the predictor (pipeline and fusion).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from perception.data.base import SkipLog
from perception.data.sample import DatasetError
from perception.data.tusimple import ABSENT, order_left_to_right, polyline_to_tusimple
from perception.errors import ConfigError, OutputError
from perception.eval.evaluate import EvalResult
from perception.eval.lanes import MAX_RUN_TIME_MS, CulaneAccumulator, LaneAccumulator
from perception.frames import LANE_SIDES, Frame
from perception.progress import Progress

PREDICTIONS_FILE = "tusimple_predictions.json"
TUSIMPLE_FPS = 20.0


class LanePredictor(Protocol):
    """What ``evaluate_tusimple`` runs: one stateful stream per clip."""

    name: str

    def start_clip(self) -> None:
        """Forget the previous clip (tracks, lane filter)."""

    def predict_lanes(self, frame: Frame) -> Sequence[np.ndarray]:
        """The frame's lanes, each float [K, 2] (x, y) in frame pixels, any order."""


class PipelineLanePredictor:
    """Our model through ``Pipeline`` with its scene fusion, exactly as ``perception run`` runs a frame.

    Args:
        pipeline: a Pipeline with a fuser (``fusion.enabled``); its ``Scene.lanes`` are the predictions.
    """

    def __init__(self, pipeline) -> None:
        if pipeline.fuser is None:
            raise ValueError("lane evaluation needs the pipeline's scene fusion (fusion.enabled: true)")
        self.pipeline = pipeline
        self.name = pipeline.contract.name

    def start_clip(self) -> None:
        self.pipeline.fuser.reset()

    def predict_lanes(self, frame: Frame) -> list[np.ndarray]:
        scene = self.pipeline(frame).scene
        return [np.asarray(lane.points_image, np.float64) for lane in submitted_lanes(scene.lanes)]


# TuSimple labels at most 5 lanes a frame and fails a frame with more than 2 predictions over its labels, so
# a submission, like the field's lane detectors, keeps a fixed number: the scene's named lines first (ego,
# then next), then its other lines by confidence. `perception run` still reports every line.
MAX_SUBMITTED_LANES = 5


def submitted_lanes(lanes: Sequence, limit: int = MAX_SUBMITTED_LANES) -> list:
    """The scene ``lanes`` a TuSimple submission keeps: at most ``limit``, named sides before "other", the more
    confident first within each side."""
    order = {side: i for i, side in enumerate(LANE_SIDES)}
    ranked = sorted(lanes, key=lambda lane: (order.get(lane.side, len(order)), -lane.confidence))
    return ranked[:limit]


def build_lane_predictor(
    spec: str,
    config=None,
    config_file: str | None = None,
    threads: int | None = None,
    score_threshold: float | None = None,
) -> PipelineLanePredictor:
    """A PipelineLanePredictor for a model file or ``default`` (the preset's model; the shipped one when it
    names none), from a PipelineConfig (the preset of ``perception run``, paths relative to ``config_file``;
    None: the defaults, camera setting included). Fusion runs whatever the preset says.

    Raises ConfigError for peers and teachers (they give masks or boxes, no lane instances) and for a preset
    that undistorts frames (TuSimple x values are in the recorded image's pixels).
    """
    from perception.config import PipelineConfig
    from perception.pipeline import build_pipeline

    if spec.startswith(("peer:", "teacher:")):
        raise ConfigError(
            f"--model {spec}: TuSimple lanes come from the pipeline's scene fusion; give a model file or 'default'"
        )
    cfg = config if config is not None else PipelineConfig()
    if cfg.preprocess.undistort:
        raise ConfigError(
            "TuSimple lanes are in the recorded image's pixels: run the evaluation without undistortion "
            "(preprocess.undistort: false)"
        )
    backend = cfg.backend if threads is None else dataclasses.replace(cfg.backend, threads=threads)
    post = cfg.postprocess
    if score_threshold is not None:
        post = dataclasses.replace(post, score_threshold=score_threshold)
    cfg = dataclasses.replace(
        cfg,
        model=cfg.model if spec == "default" else str(Path(spec).resolve()),
        backend=backend,
        postprocess=post,
        fusion=dataclasses.replace(cfg.fusion, enabled=True),
    )
    return PipelineLanePredictor(build_pipeline(cfg, config_file))


def predicted_tusimple_lanes(
    polylines: Sequence[np.ndarray], h_samples: np.ndarray, image_width: int
) -> list[np.ndarray]:
    """Polylines (float [K, 2] x, y frame pixels) → TuSimple lanes: float64 [R] whole-pixel x at ``h_samples``
    (-2 absent), lanes with no present row dropped, ordered left to right (module docstring)."""
    lanes = []
    for pts in polylines:
        xs = polyline_to_tusimple(np.asarray(pts, np.float64).reshape(-1, 2), h_samples, image_width)
        xs = np.where(xs >= 0, np.round(xs), ABSENT)
        xs[xs >= image_width] = ABSENT  # rounding up to the width
        if (xs >= 0).any():
            lanes.append(xs)
    return [lanes[i] for i in order_left_to_right(lanes, h_samples)]


def prediction_line(raw_file: str, lanes: Sequence[np.ndarray], run_time_ms: float) -> str:
    """One line of TuSimple's submission format (JSON, no newline)."""
    return json.dumps(
        {
            "raw_file": raw_file,
            "lanes": [[int(x) if x >= 0 else int(ABSENT) for x in xs] for xs in lanes],
            "run_time": round(float(run_time_ms), 3),
        }
    )


def frame_timestamp(raw_file: str, position: int, fps: float = TUSIMPLE_FPS) -> float:
    """Seconds from the clip's start: the file's number (20.jpg → frame 20) over ``fps``, else ``position``."""
    stem = Path(raw_file).stem
    return (int(stem) if stem.isdigit() else position) / fps


def evaluate_tusimple(
    predictor: LanePredictor,
    dataset,
    predictions_path: str | Path | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    fps: float = TUSIMPLE_FPS,
) -> EvalResult:
    """Score ``predictor`` on every sample of a TuSimple dataset (``perception.data.tusimple``).

    Args:
        predictor: a LanePredictor (module docstring).
        dataset: samples whose meta has ``lanes`` (float [L][R], negative absent) and ``h_samples`` [R].
        predictions_path: where to write the submission-format lines (flushed one by one); None: nowhere.
        max_frames: only the first N samples.

    Returns:
        EvalResult: ``metrics`` with the ``lanes.*`` keys of ``LaneAccumulator`` and ``CulaneAccumulator``,
        ``lanes.frames_over_200ms``, ``speed.fps`` / ``speed.ms_median`` (predictor wall time), ``frames`` and
        ``skipped`` (samples whose image could not be read: counted, not scored, no prediction line);
        ``frames``: one record per scored frame.
    """
    n = len(dataset) if max_frames is None else min(len(dataset), max_frames)
    if n == 0:
        raise ValueError(f"{dataset!r} has no samples to evaluate")
    tusimple, culane = LaneAccumulator(), CulaneAccumulator()
    skipped = SkipLog()
    records: list[dict] = []
    times: list[float] = []
    clip, position = None, 0
    bar = Progress(n, enabled=progress)
    out = None
    if predictions_path is not None:
        try:
            out = open(predictions_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
        except OSError as err:
            raise OutputError(f"{predictions_path}: cannot write ({err.strerror or err})") from err
    try:
        for i in range(n):
            try:
                sample = dataset[i]
            except DatasetError as err:
                skipped.add(err)
                continue
            raw_file = sample.meta["raw_file"]
            h = np.asarray(sample.meta["h_samples"], np.float64)
            gt = [np.asarray(xs, np.float64) for xs in sample.meta["lanes"]]
            this_clip = str(Path(raw_file).parent)
            if this_clip != clip:
                clip, position = this_clip, 0
                predictor.start_clip()
            frame = Frame(i, frame_timestamp(raw_file, position, fps), sample.image, raw_file)
            position += 1
            t0 = time.perf_counter()
            polylines = predictor.predict_lanes(frame)
            ms = (time.perf_counter() - t0) * 1e3
            hh, ww = sample.image.shape[:2]
            pred = predicted_tusimple_lanes(polylines, h, ww)
            a = tusimple.add_sampled(pred, gt, h)
            c = culane.add_sampled(pred, gt, h, (hh, ww))
            times.append(ms)
            records.append(
                {
                    "index": i,
                    "name": raw_file,
                    "acc": a["acc"],
                    "fp": a["fp"],
                    "fn": a["fn"],
                    "pred": a["pred"],
                    "gt": a["gt"],
                    "culane_tp": c["tp"],
                    "run_time_ms": round(ms, 3),
                }
            )
            if out is not None:
                out.write(prediction_line(raw_file, pred, ms) + "\n")
                out.flush()
            bar.update(i + 1)
    finally:
        if out is not None:
            out.close()
    bar.finish()
    metrics: dict[str, float] = {**tusimple.compute(), **culane.compute()}
    t = np.array(times)
    metrics["lanes.frames_over_200ms"] = int((t > MAX_RUN_TIME_MS).sum())
    metrics["speed.fps"] = float(1e3 / np.median(t)) if len(t) else math.nan
    metrics["speed.ms_median"] = float(np.median(t)) if len(t) else math.nan
    metrics["frames"] = float(len(records))
    metrics["skipped"] = float(skipped.total)
    return EvalResult(metrics, records, skipped)
