"""From sampled worlds to labelled samples, datasets on disk, clips and a montage.

``synth_frames`` yields independent frames (a new world and camera each); ``synth_clip`` yields a
temporally coherent sequence (one world, the ego driving along it, agents moving, stable track ids).
Both give ``Sample`` values whose labels come from the renderer's buffers, after every geometric effect,
so they are exact: segmentation (0 background, 1 drivable, 2 lane, 255 not modelled), the visible
part of each object as a box, heavily occluded or tiny objects flagged ``ignore``, lane lines as 3D
polylines with their image projections, the camera, and the ego car's true position in its lane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from perception.camera_model import CameraModel, Mounting
from perception.data.boxes import instance_extents
from perception.data.sample import DET_CLASSES, SEG_CLASSES, Sample
from perception.data.synth.effects import (
    Distorter,
    EffectDraw,
    EffectOptions,
    apply_hood,
    draw_effects,
    lens_camera,
    photometric,
)
from perception.data.synth.raster import IGNORE, Rendered
from perception.data.synth.render import Renderer
from perception.data.synth.world import World, sample_world, step_world
from perception.progress import Progress

log = logging.getLogger(__name__)

MIN_BOX_PX = 4  # objects with fewer visible pixels get no box at all
IGNORE_BELOW_HEIGHT = 6  # boxes lower than this (px) are flagged ignore: too small to ask a detector for
IGNORE_BELOW_VISIBLE = 0.3  # visible fraction under which an object counts as heavily occluded


@dataclass(frozen=True)
class SynthOptions:
    """What to generate. Sizes in pixels (width, height); probabilities per frame (per clip for clips)."""

    size: tuple[int, int] = (640, 360)
    density: float = 1.0  # traffic and clutter multiplier
    night_p: float = 0.15
    weather_p: float = 0.2
    hfov_deg: tuple[float, float] = (50.0, 75.0)
    height_m: tuple[float, float] = (1.15, 1.7)
    pitch_deg: tuple[float, float] = (-0.5, 4.0)
    yaw_deg: tuple[float, float] | None = None  # None: normal, sigma 1 deg
    roll_deg: tuple[float, float] | None = None  # None: normal, sigma 0.7 deg
    markings: str = "any"  # "us": every road has US markings (3 m dashes every 12 m)
    principal_jitter: bool = True  # False: the principal point at the image centre
    effects: EffectOptions = field(default_factory=EffectOptions)


def sample_camera(rng: np.random.Generator, opts: SynthOptions) -> CameraModel:
    """A dashcam: random field of view, mounting height, pitch, and a little roll and yaw."""
    w, h = opts.size
    f = (w / 2) / np.tan(np.radians(rng.uniform(*opts.hfov_deg)) / 2)
    cx = (w - 1) / 2 + rng.normal(0, 0.01 * w) * opts.principal_jitter
    cy = (h - 1) / 2 + rng.normal(0, 0.02 * h) * opts.principal_jitter
    return CameraModel(
        image_size=(w, h),
        camera_matrix=((float(f), 0.0, float(cx)), (0.0, float(f), float(cy)), (0.0, 0.0, 1.0)),
        name="synthetic",
        mounting=Mounting(
            height_m=float(rng.uniform(*opts.height_m)),
            pitch_deg=float(rng.uniform(*opts.pitch_deg)),
            yaw_deg=float(rng.normal(0, 1.0) if opts.yaw_deg is None else rng.uniform(*opts.yaw_deg)),
            roll_deg=float(rng.normal(0, 0.7) if opts.roll_deg is None else rng.uniform(*opts.roll_deg)),
        ),
    )


class FrameMaker:
    """Turns (world, camera, effect draw) into a labelled Sample; caches per-camera work for clips."""

    def __init__(self, camera: CameraModel, draw: EffectDraw):
        self.camera = camera
        self.draw = draw
        self.lens = lens_camera(camera, draw)
        self.distorter = Distorter(self.lens) if draw.k1 else None
        self.renderer = Renderer(self.distorter.render_camera if self.distorter else camera)

    def make(self, world: World, name: str, rng: np.random.Generator, extra_meta: dict | None = None) -> Sample:
        r = self.renderer.render(world)
        # Visible pixels before distortion, comparable with the renderer's own per-object counts.
        ids, _, areas = instance_extents(r.instance, [o.track_id for o in r.objects])
        visible_px = dict(zip(ids.tolist(), areas.tolist(), strict=True))
        if self.distorter is not None:
            d = self.distorter
            r = Rendered(
                image=d.image(r.image),
                seg=d.labels(r.seg, IGNORE),
                instance=d.labels(r.instance, 0),
                depth=d.labels(r.depth, 1e4),
                emissive=d.image(r.emissive),
                objects=r.objects,
            )
        apply_hood(r, self.draw, world)
        image = photometric(r.image, r, world, self.draw, rng)
        boxes, labels, ignore, objects = self._boxes(r, visible_px)
        meta = {
            "synthetic": True,
            "camera": self.lens.to_dict(),
            "ego": ego_truth(world),
            "lanes": lane_lines(world, self.lens),
            "objects": objects,
            "environment": {
                "time": world.env.time,
                "fog": world.env.fog,
                "rain": world.env.rain,
                "sun_elevation_deg": world.env.sun_elevation,
            },
            "effects": {
                "k1": self.draw.k1,
                "hood": self.draw.hood,
                "motion_blur_px": self.draw.motion_blur,
                "noise_sigma": round(self.draw.noise_sigma, 2),
                "jpeg_quality": self.draw.jpeg_quality,
            },
            "world_seed": world.seed,
        }
        if extra_meta:
            meta.update(extra_meta)
        return Sample(
            image=image,
            name=name,
            seg=r.seg,
            lane_labelled=True,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta=meta,
        )

    def _boxes(self, r: Rendered, visible_px: dict[int, int]):
        ids, found, _ = instance_extents(r.instance, [o.track_id for o in r.objects])
        extents = {int(i): tuple(int(v) for v in b) for i, b in zip(ids, found, strict=True)}
        boxes, labels, ignore, objects = [], [], [], []
        h, w = r.seg.shape
        for info in r.objects:
            ext = extents.get(info.track_id)
            vis_px = visible_px.get(info.track_id, 0)
            if ext is None or vis_px < MIN_BOX_PX:
                continue
            x0, y0, x1, y1 = ext
            # Both counts are over the rendered canvas, so this measures occlusion, not truncation.
            visibility = vis_px / max(info.alone_px, 1)
            truncated = x0 == 0 or y0 == 0 or x1 == w or y1 == h
            flag = visibility < IGNORE_BELOW_VISIBLE or (y1 - y0) < IGNORE_BELOW_HEIGHT
            boxes.append((x0, y0, x1, y1))
            labels.append(DET_CLASSES.index(info.cls))
            ignore.append(flag)
            objects.append(
                {
                    "track_id": info.track_id,
                    "class": info.cls,
                    "box": [float(x0), float(y0), float(x1), float(y1)],
                    "visibility": round(float(min(visibility, 1.0)), 3),
                    "truncated": bool(truncated),
                    "ignore": bool(flag),
                    "distance_m": round(info.distance, 3),
                    "position_m": [round(v, 3) for v in info.position],
                    "size_m": [round(float(v), 3) for v in info.size],
                    "speed_mps": round(float(info.speed), 3),
                }
            )
        return (
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(labels, np.int64),
            np.array(ignore, bool),
            objects,
        )


def ego_truth(world: World) -> dict:
    """Where the ego car really is: lane index, offset from the lane centre (m, left positive), etc."""
    lay, ego = world.layout, world.ego
    cl = world.centerline
    k = np.gradient(cl.heading, cl.s)
    curvature = float(np.interp(ego.s, cl.s, k))
    return {
        "lane_index": ego.lane,
        "n_lanes": lay.n_lanes,
        "n_oncoming": lay.n_oncoming,
        "lane_width_m": round(lay.lane_width, 4),
        "lateral_offset_m": round(ego.d - lay.lane_center(ego.lane), 4),
        "heading_error_rad": round(ego.heading, 5),
        "curvature_1pm": round(curvature, 6),
        "speed_mps": round(ego.speed, 3),
        "s_m": round(ego.s, 3),
    }


def lane_lines(world: World, camera: CameraModel, ahead: float = 100.0, step: float = 2.0) -> list[dict]:
    """Each painted boundary as a 3D polyline in the vehicle frame and its projection in the image.

    ``side`` names the boundary relative to the ego lane: ego_left/ego_right, next_left/next_right, or
    left_k/right_k further out. Image points are kept only where they fall inside the image.
    """
    from perception.data.synth.raster import ego_transform, road_to_vehicle

    origin, rot = ego_transform(world)
    lay, ego = world.layout, world.ego
    s = np.arange(ego.s, ego.s + ahead, step)
    w, h = camera.image_size
    out = []
    for b, m in enumerate(lay.markings):
        if not m.visible:
            continue
        x, y = road_to_vehicle(world, s, np.full_like(s, m.d), origin, rot)
        keep = x > 1.0
        pts = np.column_stack([x[keep], y[keep], np.zeros(keep.sum())])
        if len(pts) < 2:
            continue
        uv, depth = camera.project(pts, distort=True)
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        rel = b - ego.lane  # boundary ego.lane is the ego lane's left line, ego.lane + 1 its right
        side = {0: "ego_left", 1: "ego_right", -1: "next_left", 2: "next_right"}.get(
            rel, f"left_{-rel}" if rel < 0 else f"right_{rel - 1}"
        )
        out.append(
            {
                "boundary": b,
                "side": side,
                "style": m.style,
                "color": m.color,
                "points_vehicle_m": np.round(pts, 3).tolist(),
                "points_image": np.round(uv[inside], 2).tolist(),
            }
        )
    return out


def synth_frames(n: int, seed: int = 0, opts: SynthOptions = SynthOptions(), start: int = 0) -> Iterator[Sample]:
    """``n`` independent frames; frame i depends only on (seed, i), so ranges can be made in parallel."""
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        world = sample_world(
            rng, density=opts.density, markings=opts.markings, night_p=opts.night_p, weather_p=opts.weather_p
        )
        camera = sample_camera(rng, opts)
        maker = FrameMaker(camera, draw_effects(rng, world, opts.effects))
        yield maker.make(world, f"{seed:04d}_{i:06d}", rng)


def synth_clip(
    clip: int, n_frames: int, seed: int = 0, fps: float = 10.0, opts: SynthOptions = SynthOptions()
) -> Iterator[Sample]:
    """One coherent clip: the ego car drives along one world; camera and effects fixed for the clip."""
    rng = np.random.default_rng([seed, 1_000_000 + clip])
    world = sample_world(
        rng,
        length_m=400 + n_frames * 3.0,
        density=opts.density,
        markings=opts.markings,
        night_p=opts.night_p,
        weather_p=opts.weather_p,
    )
    camera = sample_camera(rng, opts)
    draw = draw_effects(rng, world, opts.effects)
    draw = replace(draw, motion_blur=min(draw.motion_blur, 5))
    maker = FrameMaker(camera, draw)
    for t in range(n_frames):
        meta = {"clip": f"clip_{clip:03d}", "frame_index": t, "timestamp_s": round(t / fps, 6), "fps": fps}
        yield maker.make(world, f"clip_{clip:03d}/{t:06d}", rng, meta)
        world = step_world(world, 1.0 / fps, rng)


def _frames_chunk(seed: int, start: int, count: int, opts: SynthOptions) -> list[Sample]:
    return list(synth_frames(count, seed, opts, start=start))


def _clip_frames(clip: int, n_frames: int, seed: int, fps: float, opts: SynthOptions) -> list[Sample]:
    return list(synth_clip(clip, n_frames, seed, fps, opts))


def _in_order(tasks: list[tuple], workers: int) -> Iterator[list[Sample]]:
    """Run (function, *args) tasks, in a process pool when workers > 1, yielding results in task order."""
    if workers <= 1:
        for fn, *args in tasks:
            yield fn(*args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(fn, *args) for fn, *args in tasks]
        for fut in futures:
            yield fut.result()


def write_synth_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    clips: int = 0,
    clip_frames: int = 60,
    fps: float = 10.0,
    opts: SynthOptions = SynthOptions(),
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Write ``n`` frames (train/val split) and ``clips`` clips (split ``clips`` + one mp4 each).

    Frame i depends only on (seed, i) and clip c on (seed, c), so the output is the same for any number
    of ``workers`` (processes rendering in parallel; this process writes). Returns counts and the
    generation speed in frames per second, writing included.
    """
    from perception.data.writers import DatasetWriter

    out = Path(out_dir)
    n_val = int(round(n * val_fraction))
    total = n + clips * clip_frames
    chunk = 8
    tasks: list[tuple] = [(_frames_chunk, seed, i, min(chunk, n - i), opts) for i in range(0, n, chunk)]
    tasks += [(_clip_frames, c, clip_frames, seed, fps, opts) for c in range(clips)]
    t0 = time.perf_counter()
    done = 0
    bar = Progress(total, enabled=progress)
    desc = f"perception synth: seed {seed}, {n} frames, {clips} clips of {clip_frames}, size {opts.size}"
    with DatasetWriter(out, SEG_CLASSES, DET_CLASSES, description=desc) as writer:
        for result in _in_order(tasks, workers):
            clip_name = result[0].meta.get("clip") if result else None
            video = None
            if clip_name:
                (out / "clips").mkdir(parents=True, exist_ok=True)
                video = cv2.VideoWriter(
                    str(out / "clips" / f"{clip_name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, opts.size
                )
            try:
                for sample in result:
                    if video is not None:
                        writer.add(sample, "clips")
                        video.write(sample.image)
                    else:
                        index = int(sample.name.rsplit("_", 1)[1])
                        writer.add(sample, "val" if index >= n - n_val else "train")
                    done += 1
            finally:
                if video is not None:
                    video.release()
            bar.update(done)
        counts = writer.close()
    elapsed = time.perf_counter() - t0
    bar.finish()
    return {"counts": counts, "frames": done, "seconds": round(elapsed, 2), "fps": round(done / elapsed, 2)}


def write_montage(out: Path, counts: dict) -> Path | None:
    """``out/montage.png``: a few frames of a written dataset (8 train, 2 val, 2 clip frames, spread over each
    split; ``counts``: the report's images per split) with their labels drawn, to look at. None without frames."""
    from perception.data.folder import FolderDataset
    from perception.data.overlay import montage

    picks = []
    for split, k in (("train", 8), ("val", 2), ("clips", 2)):
        if counts.get(split):
            ds = FolderDataset(out, split)
            step = max(1, len(ds) // k)
            picks += [ds[i] for i in range(0, len(ds), step)[:k]]
    if not picks:
        return None
    path = out / "montage.png"
    cv2.imwrite(str(path), montage(picks, cols=4, tile_width=400))
    return path
