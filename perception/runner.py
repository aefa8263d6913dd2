"""The offline loop: decode thread → pipeline (this thread) → writer thread, with timing and accounting.

Decoding, inference and writing overlap: each stage runs in its own thread and hands frames on through
bounded queues (memory stays bounded; order is kept). Every frame position read from the source ends up
as exactly one JSONL line, a result or an error record, so results so far stay valid whatever stops the
run. The run returns a ``RunSummary``; it never raises for a bad frame, only for a source that cannot be
opened or an output that cannot be written.
"""

from __future__ import annotations

import json
import logging
import queue
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.frames import Frame
from perception.paths import ensure_writable_dir
from perception.pipeline import Pipeline
from perception.progress import Progress
from perception.sinks import ImageSink, JsonlSink, VideoSink, error_to_json, scene_to_json
from perception.sources import BadFrame, FrameSource, ImageFolderSource, size_change_reason
from perception.viz import draw_scene

log = logging.getLogger(__name__)

STAGES = ("decode", "preprocess", "inference", "postprocess", "fusion", "render", "write")  # wall clock, in flow order
_END = object()


def configure_host_threads() -> None:
    """Leave the cores to the stage threads and the inference engine.

    Decode, inference and writing already run in parallel threads; OpenCV's own worker pool on top of
    them only adds contention on a small CPU (measured: ~10 % more frames/s on 2 cores without it). A
    stage waiting for the GIL held by another stage's Python code waits up to the switch interval (5 ms by
    default); measured here, that doubled preprocessing wall time (1.1 ms CPU, 3-4 ms wall).
    """
    import sys

    import cv2

    cv2.setNumThreads(1)
    sys.setswitchinterval(0.0005)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


@dataclass
class RunSummary:
    """What a run did. ``problems`` holds one line per thing the user should know (non-zero exit)."""

    source: str
    backend: str = ""
    frames_read: int = 0
    frames_processed: int = 0
    frames_failed: int = 0
    expected_frames: int | None = None
    wall_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # per-stage median per frame
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    peak_rss_mb: float = 0.0  # the process's peak resident memory at the end of the run

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "backend": self.backend,
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "frames_failed": self.frames_failed,
            "expected_frames": self.expected_frames,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "stage_median_ms": {k: round(v, 3) for k, v in self.stage_ms.items()},
            "problems": self.problems,
            "interrupted": self.interrupted,
            "outputs": self.outputs,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }

    def format(self) -> str:
        """A few lines for the terminal."""
        total = f" of {self.expected_frames}" if self.expected_frames else ""
        lines = [
            f"{self.source}: {self.frames_processed} frames processed ({self.frames_read}{total} read, "
            f"{self.frames_failed} failed) in {self.wall_s:.1f} s, {self.fps:.1f} frames/s",
            "median ms/frame, wall clock: "
            + ", ".join(f"{k} {v:.2f}" for k, v in self.stage_ms.items() if not k.endswith("_cpu")),
            "median ms/frame, CPU of the stage's own thread: "
            + ", ".join(f"{k[:-4]} {v:.2f}" for k, v in self.stage_ms.items() if k.endswith("_cpu")),
        ]
        if self.backend:
            lines.append(f"backend: {self.backend}; peak resident memory {self.peak_rss_mb:.0f} MB")
        lines += [f"wrote {v}" for v in self.outputs.values()]
        lines += [f"problem: {p}" for p in self.problems]
        if self.interrupted:
            lines.append("interrupted: results up to the last written frame are valid")
        return "\n".join(lines)


def run_source(
    source: FrameSource,
    pipeline: Pipeline,
    out_dir: str | Path,
    *,
    write_jsonl: bool = True,
    write_video: bool = True,
    video_fourcc: str = "mp4v",
    overlay_alpha: float = 0.45,
    queue_size: int = 8,
    max_frames: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
) -> RunSummary:
    """Process every frame of ``source`` and write ``results.jsonl`` / ``annotated.mp4`` / ``summary.json``.

    ``write_video`` switches the annotated output: ``annotated.mp4`` for a video, or for an image folder
    (``ImageFolderSource``) one annotated image per input image, ``annotated/<path relative to the
    folder>`` with the input's file name and extension (``ImageSink``). A skipped image gets none.

    ``batch_size`` > 1 runs the network on that many frames at once (offline throughput; a live camera
    wants 1, the latency of one frame). A bad frame flushes the batch before it, so order is kept.

    KeyboardInterrupt stops reading, finishes what is in flight, closes the outputs and returns a
    summary with ``interrupted`` set.
    """
    out = ensure_writable_dir(out_dir)
    summary = RunSummary(source=source.name, backend=pipeline.backend.description)
    summary.expected_frames = source.expected_frames
    if max_frames is not None and source.expected_frames:
        summary.expected_frames = min(max_frames, source.expected_frames)
    from_images = isinstance(source, ImageFolderSource)
    images = ImageSink(out / "annotated", source.root) if write_video and from_images else None
    jsonl = JsonlSink(out / "results.jsonl") if write_jsonl else None
    video = VideoSink(out / "annotated.mp4", source.fps, video_fourcc) if write_video and not images else None
    if jsonl:
        summary.outputs["jsonl"] = str(jsonl.path)
    if video:
        summary.outputs["video"] = str(video.path)
    if images:
        summary.outputs["images"] = str(images.folder)

    decoded: queue.Queue = queue.Queue(maxsize=queue_size)
    processed: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()  # stop reading (interrupt, max frames reached, or the writer failed)
    writer_failed = threading.Event()
    errors: list[BaseException] = []
    timings: dict[str, list[float]] = defaultdict(list)
    bad: list[BadFrame] = []

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    prepare = getattr(pipeline, "prepare", None)

    def read() -> None:
        try:
            it = iter(source)
            while not stop.is_set():
                if max_frames is not None and summary.frames_read >= max_frames:
                    break
                t0 = time.perf_counter()
                item = next(it, _END)
                if item is _END:
                    break
                summary.frames_read += 1
                stage_ms = {"decode": (time.perf_counter() - t0) * 1e3}
                # Preprocessing here overlaps it with the previous batch's inference. A frame it fails on
                # is left to the inference thread, which reports it where it always has.
                prepared = None
                if prepare is not None and isinstance(item, Frame):
                    t1, c1 = time.perf_counter(), time.thread_time()
                    try:
                        prepared = prepare(item)
                        stage_ms["preprocess"] = (time.perf_counter() - t1) * 1e3
                        stage_ms["preprocess_cpu"] = (time.thread_time() - c1) * 1e3
                    except Exception:
                        prepared = None
                if not put(decoded, (item, stage_ms, prepared)):
                    return
        except BaseException as err:  # handed to the main thread, which re-raises it after the drain
            errors.append(err)
        finally:
            decoded.put(_END)

    def write() -> None:
        try:
            while True:
                item = processed.get()
                if item is _END:
                    return
                frame, result, frame_ms = item
                if isinstance(result, BadFrame):
                    if jsonl:
                        jsonl.write(error_to_json(result.index, result.timestamp_s, result.reason))
                    continue
                # Fusion is stateful (tracks, lane filter), so it runs here, where frames arrive in order, and
                # overlaps the next batch's inference.
                result = pipeline.fuse(result)
                frame_ms.update(result.timings_ms)
                if video or images:
                    t0 = time.perf_counter()
                    annotated = draw_scene(frame.image, result, overlay_alpha)
                    if video:
                        video.write(annotated)
                    else:
                        images.write(annotated, frame.source)
                    frame_ms["render"] = (time.perf_counter() - t0) * 1e3
                t1 = time.perf_counter()
                if jsonl:
                    jsonl.write(scene_to_json(result, frame_ms))
                frame_ms["write"] = (time.perf_counter() - t1) * 1e3
                for k, v in frame_ms.items():
                    timings[k].append(v)
        except BaseException as err:
            errors.append(err)
            writer_failed.set()
            stop.set()
            while processed.get() is not _END:  # keep the producer from blocking forever
                pass

    reader = threading.Thread(target=read, name="decode", daemon=True)
    writer = threading.Thread(target=write, name="write", daemon=True)
    bar = Progress(summary.expected_frames, enabled=progress)
    start = time.perf_counter()
    reader.start()
    writer.start()
    stream_hw: tuple[int, int] | None = None
    batch: list[tuple[Frame, dict[str, float], Any]] = []

    def flush() -> None:
        frames = [f for f, _, _ in batch]
        prepared = [p for _, _, p in batch]
        if any(p is None for p in prepared):
            results = pipeline.process_batch(frames, fuse=False)
        else:
            results = pipeline.process_batch(frames, fuse=False, prepared=prepared)
        for (frame, read_ms, _), result in zip(batch, results, strict=True):
            put(processed, (frame, result, {**read_ms, **result.timings_ms}))
        summary.frames_processed += len(batch)
        bar.update(summary.frames_processed)
        batch.clear()

    try:
        # A reader error still lets frames decoded before it through; a writer error stops at once.
        while not writer_failed.is_set():
            item = decoded.get()
            if item is _END:
                break
            frame, read_ms, prepared = item
            if isinstance(frame, Frame):
                if stream_hw is None:
                    stream_hw = frame.size_hw
                if frame.size_hw != stream_hw:
                    frame = BadFrame(
                        frame.index, frame.timestamp_s, frame.source, size_change_reason(frame.size_hw, stream_hw)
                    )
            if isinstance(frame, BadFrame):
                if batch:
                    flush()
                bad.append(frame)
                log.warning("%s: frame %d skipped: %s", frame.source, frame.index, frame.reason)
                put(processed, (None, frame, None))
                continue
            batch.append((frame, read_ms, prepared))
            if len(batch) >= batch_size:
                flush()
        if batch and not writer_failed.is_set():
            flush()
    except KeyboardInterrupt:
        summary.interrupted = True
        stop.set()
    finally:
        processed.put(_END)
        writer.join()
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                decoded.get(timeout=0.05)
            except queue.Empty:
                pass
        reader.join()
        source.close()
        if video:
            video.close()
        if jsonl:
            jsonl.close()
        bar.finish()
    summary.wall_s = time.perf_counter() - start
    summary.peak_rss_mb = peak_rss_mb()
    summary.frames_failed = len(bad)
    if bad:
        summary.problems.append(
            f"{len(bad)} frame(s) skipped; first: frame {bad[0].index} ({bad[0].source}): {bad[0].reason}"
            + ("; skipped images have no annotated image" if images else "")
        )
    if (
        not summary.interrupted
        and not errors
        and summary.expected_frames is not None
        and summary.frames_read < summary.expected_frames
    ):
        summary.problems.append(
            f"{source.name}: decoding stopped after {summary.frames_read} of {summary.expected_frames} frames "
            "(file truncated or corrupt); results for the frames read are complete"
        )
    if errors:
        summary.problems.append(f"stopped early: {errors[0]}")
    order = [k for k in (*STAGES, *(f"{s}_cpu" for s in STAGES)) if k in timings]
    summary.stage_ms = {s: statistics.median(timings[s]) for s in order}
    summary.outputs["summary"] = str(out / "summary.json")
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if errors:  # the summary above still records what was done before the failure
        raise errors[0]
    return summary
