"""A drive's range files → one ``results.jsonl`` (fusion in frame order) and a per-drive summary.

The ranges must tile the drive: each starts where the previous ended, and their frames are 0..N-1 exactly
once; otherwise the merge refuses (a missing or duplicated range is a bug or a lost file, never something
to paper over). ``results.jsonl`` is written to a temporary name and renamed, then ``summary.json`` the
same way: a drive with a ``summary.json`` is complete, and a re-run skips it.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.config import PipelineConfig
from perception.fleet.inputs import FleetInput, local_copy
from perception.fleet.ranges import letterbox_from_row
from perception.frames import Detections, FrameResult, SegMap
from perception.sinks import error_to_json, scene_to_json
from perception.sources import size_change_reason

SUMMARY_NAME = "summary.json"


class MergeError(RuntimeError):
    """The range files of a drive do not add up to the whole drive."""


def range_files(folder: Path) -> list[Path]:
    """The finished range files of a drive (temporary files of unfinished writes are not listed)."""
    return sorted(p for p in folder.glob("*.npz")) if folder.is_dir() else []


def load_ranges(folder: Path) -> list[dict[str, np.ndarray]]:
    """All range files, in order, checked to tile the drive from frame 0 with no gap or overlap."""
    loaded = []
    for path in range_files(folder):
        with np.load(path, allow_pickle=False) as data:
            loaded.append({k: data[k] for k in data.files})
    if not loaded:
        raise MergeError(f"{folder}: no range files")
    loaded.sort(key=lambda r: int(r["range"][0]))
    expected_start = 0
    for r in loaded:
        start, end = int(r["range"][0]), int(r["range"][1])
        if start != expected_start:
            raise MergeError(f"{folder}: range starting at frame {start}, expected one at {expected_start}")
        seen = np.sort(np.concatenate([r["frame"], r["bad_frame"]]))
        if len(seen) and (seen[0] != start or not np.array_equal(seen, np.arange(start, start + len(seen)))):
            raise MergeError(f"{folder}: range {start}-{end} holds frames that are not {start}.. in sequence")
        if end >= 0 and len(seen) != end - start and r is not loaded[-1]:
            raise MergeError(f"{folder}: range {start}-{end} holds {len(seen)} frames, expected {end - start}")
        expected_start = start + len(seen) if end < 0 or r is loaded[-1] else end
        if end < 0 and r is not loaded[-1]:
            raise MergeError(f"{folder}: an open-ended range at {start} is not the last")
    if int(loaded[-1]["range"][1]) >= 0:
        raise MergeError(
            f"{folder}: the last range ends at {int(loaded[-1]['range'][1])}; the open-ended one is missing"
        )
    return loaded


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def merge_drive(
    item: FleetInput,
    drive_dir: str | os.PathLike,
    config: PipelineConfig,
    config_file: str | None,
    expected_frames: int | None,
    fps: float,
    write_video: bool = False,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Fuse the drive's ranges in frame order into ``results.jsonl`` (and ``annotated.mp4``); return and
    write its summary."""
    from perception.camera_model import load_camera
    from perception.pipeline import build_fuser, build_fusion_camera

    drive = Path(drive_dir)
    ranges = load_ranges(drive / "ranges")
    det_classes = tuple(str(c) for c in ranges[0]["det_classes"])
    seg_classes = tuple(str(c) for c in ranges[0]["seg_classes"])
    if item.camera:  # the drive's own camera file (manifest column) wins over the preset's
        camera = load_camera(item.camera)
    else:  # a remote drive gives camera: auto no focal length from its metadata (it is not fetched for that)
        media = None if item.is_remote else local_copy(item, cache_dir or str(drive))
        camera = build_fusion_camera(config.preprocess.camera, config_file, media, config.fusion.auto_camera)
    fuser = (
        build_fuser(config.fusion, det_classes, seg_classes, camera, config.preprocess.undistort)
        if config.fusion.enabled
        else None
    )
    lines: list[str] = []
    frames_ok = 0
    bad_frames = 0
    det_counts: Counter[str] = Counter()
    tracks: dict[str, set[int]] = {}
    warning_onsets: Counter[str] = Counter()
    active: set[str] = set()
    net_ms: list[float] = []
    first_t = last_t = None
    stream_hw: tuple[int, int] | None = None
    results: dict[int, FrameResult] = {}
    for r in ranges:
        offsets = np.concatenate([[0], np.cumsum(r["det_count"])])
        entries: list[tuple[int, Any]] = [(int(f), ("ok", k)) for k, f in enumerate(r["frame"])]
        entries += [(int(f), ("bad", k)) for k, f in enumerate(r["bad_frame"])]
        for index, (what, k) in sorted(entries):
            if what == "bad":
                bad_frames += 1
                t = float(r["bad_t"][k])
                lines.append(json.dumps(error_to_json(index, t, str(r["bad_reason"][k])), separators=(",", ":")))
                continue
            t = float(r["t"][k])
            hw = (int(r["size"][k][0]), int(r["size"][k][1]))
            if stream_hw is None:
                stream_hw = hw
            if hw != stream_hw:
                bad_frames += 1
                reason = size_change_reason(hw, stream_hw)
                lines.append(json.dumps(error_to_json(index, t, reason), separators=(",", ":")))
                continue
            a, b = int(offsets[k]), int(offsets[k + 1])
            lb = letterbox_from_row(r["letterbox"][k])
            seg = SegMap(r["seg"][k], seg_classes) if r["seg"].ndim == 3 and len(r["seg"]) else None
            timings = dict(
                zip(("preprocess", "inference", "postprocess"), (float(v) for v in r["timings_ms"][k]), strict=True)
            )
            result = FrameResult(
                frame_index=index,
                timestamp_s=t,
                frame_size=hw,
                detections=Detections(r["boxes"][a:b], r["scores"][a:b], r["labels"][a:b]),
                det_class_names=det_classes,
                seg=seg,
                letterbox=lb,
                timings_ms=timings,
            )
            if fuser is not None:
                result = replace(result, scene=fuser.update(result))
            lines.append(json.dumps(scene_to_json(result), separators=(",", ":")))
            frames_ok += 1
            net_ms.append(timings["inference"])
            first_t = t if first_t is None else first_t
            last_t = t
            for label in result.detections.labels:
                det_counts[det_classes[int(label)]] += 1
            if result.scene is not None:
                for obj in result.scene.objects:
                    tracks.setdefault(det_classes[obj.track.label], set()).add(obj.track.track_id)
                now = set(result.scene.warnings)
                for w in now - active:
                    warning_onsets[w] += 1
                active = now
            if write_video:
                results[index] = result
    _write_atomically(drive / "results.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    total = frames_ok + bad_frames
    problems = []
    if expected_frames is not None and total < expected_frames:
        problems.append(f"decoding stopped after {total} of {expected_frames} frames (file truncated or corrupt)")
    if bad_frames:
        problems.append(f"{bad_frames} frame(s) could not be used (error lines in results.jsonl)")
    duration_s = (last_t - first_t + 1.0 / fps) if first_t is not None else 0.0
    hours = duration_s / 3600.0
    outputs = {"jsonl": str(drive / "results.jsonl")}
    if write_video:
        outputs["video"] = str(_write_video(item, drive, results, fps, cache_dir))
    summary = {
        "id": item.id,
        "uri": item.uri,
        "kind": item.kind,
        "frames": total,
        "frames_failed": bad_frames,
        "expected_frames": expected_frames,
        "ranges": len(ranges),
        "duration_s": round(duration_s, 3),
        "detections_per_class": dict(sorted(det_counts.items())),
        "tracked_objects_per_class": {k: len(v) for k, v in sorted(tracks.items())},
        "warnings": dict(sorted(warning_onsets.items())),
        "warnings_per_hour": {k: round(v / hours, 3) for k, v in sorted(warning_onsets.items())} if hours > 0 else {},
        "inference_ms_median": round(statistics.median(net_ms), 3) if net_ms else None,
        "problems": problems,
        "outputs": outputs,
    }
    _write_atomically(drive / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def _write_video(
    item: FleetInput, drive: Path, results: dict[int, FrameResult], fps: float, cache_dir: str | None
) -> Path:
    """The annotated video: the drive decoded once more, in order, with each frame's fused result drawn."""
    from perception.fleet.ranges import iter_range
    from perception.frames import Frame
    from perception.sinks import VideoSink
    from perception.viz import draw_scene

    path = local_copy(item, cache_dir or str(drive))
    target = drive / "annotated.mp4"
    tmp = drive / f"annotated.tmp-{os.getpid()}.mp4"
    sink = VideoSink(tmp, fps)
    try:
        for frame in iter_range(path, 0, None):
            if isinstance(frame, Frame) and frame.index in results:
                sink.write(draw_scene(frame.image, results[frame.index]))
    finally:
        sink.close()
    os.replace(tmp, target)
    return target
