"""The Ray actor of a fleet run: one loaded model, turning ranges of drives into range files
(``ranges.py``) and merging a finished drive (``merge.py``).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.config import PipelineConfig
from perception.fleet.inputs import FleetInput, local_copy
from perception.fleet.ranges import LETTERBOX_FIELDS, iter_range, letterbox_row, write_range_atomically
from perception.frames import Frame
from perception.sources import BadFrame


class RangeWorker:
    """Holds one loaded model; turns a range of a drive into a range file. Ray runs it as an actor.

    Args:
        config: the pipeline config (model, preprocessing, thresholds); fusion is switched off here.
        config_file: the file ``config``'s relative paths are relative to.
        threads: inference threads for this worker (it reserves one CPU; 1 keeps workers from contending).
        batch: frames per network call.
        cache_dir: where remote inputs are copied.
    """

    def __init__(
        self, config: PipelineConfig, config_file: str | None, threads: int, batch: int, cache_dir: str
    ) -> None:
        from perception.pipeline import build_pipeline
        from perception.runner import configure_host_threads

        configure_host_threads()
        config = replace(
            config,
            fusion=replace(config.fusion, enabled=False),
            backend=replace(config.backend, threads=threads),
        )
        self.pipeline = build_pipeline(config, config_file)
        self.batch = max(1, batch)
        self.cache_dir = cache_dir

    def pid(self) -> int:
        return os.getpid()

    def merge(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """merge.merge_drive on this worker: it holds a CPU already, so merges need none of their own."""
        from perception.fleet.merge import merge_drive

        return merge_drive(*args, **kwargs)

    def process(self, item: FleetInput, start: int, end: int | None, out_path: str) -> dict[str, Any]:
        """Run frames [start, end) of ``item`` and write ``out_path``; returns counts and timings."""
        t0 = time.perf_counter()
        path = local_copy(item, self.cache_dir)
        indices: list[int] = []
        times: list[float] = []
        sizes: list[tuple[int, int]] = []
        counts: list[int] = []
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        segs: list[np.ndarray] = []
        lbs: list[list[float]] = []
        timings: list[list[float]] = []
        bad: list[tuple[int, float, str]] = []
        batch: list[Frame] = []

        def flush() -> None:
            for r in self.pipeline.process_batch(batch, fuse=False):
                indices.append(r.frame_index)
                times.append(r.timestamp_s)
                sizes.append(r.frame_size)
                counts.append(len(r.detections))
                boxes.append(r.detections.boxes_xyxy)
                scores.append(r.detections.scores)
                labels.append(r.detections.labels)
                segs.append(r.seg.class_ids if r.seg is not None else np.zeros((0, 0), np.uint8))
                lbs.append(letterbox_row(r.letterbox))
                timings.append([r.timings_ms.get(k, 0.0) for k in ("preprocess", "inference", "postprocess")])
            batch.clear()

        for frame in iter_range(path, start, end):
            if isinstance(frame, BadFrame):
                if batch:
                    flush()
                bad.append((frame.index, frame.timestamp_s, frame.reason))
                continue
            if batch and frame.size_hw != batch[0].size_hw:
                flush()  # a batch is one size; the merge reports the odd frame
            batch.append(frame)
            if len(batch) >= self.batch:
                flush()
        if batch:
            flush()
        contract = self.pipeline.contract
        write_range_atomically(
            Path(out_path),
            {
                "frame": np.array(indices, np.int64),
                "t": np.array(times, np.float64),
                "size": np.array(sizes, np.int32).reshape(-1, 2),
                "det_count": np.array(counts, np.int32),
                "boxes": np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
                "scores": np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32),
                "labels": np.concatenate(labels).astype(np.int32) if labels else np.zeros(0, np.int32),
                "seg": np.stack(segs) if segs and len({s.shape for s in segs}) == 1 else np.zeros((0, 0, 0), np.uint8),
                "letterbox": np.array(lbs, np.float64).reshape(-1, LETTERBOX_FIELDS),
                "timings_ms": np.array(timings, np.float64).reshape(-1, 3),
                "bad_frame": np.array([b[0] for b in bad], np.int64),
                "bad_t": np.array([b[1] for b in bad], np.float64),
                "bad_reason": np.array([b[2] for b in bad], dtype=np.str_),
                "det_classes": np.array(contract.det_classes, dtype=np.str_),
                "seg_classes": np.array(contract.seg_classes, dtype=np.str_),
                "range": np.array([start, -1 if end is None else end], np.int64),
            },
        )
        return {
            "id": item.id,
            "start": start,
            "end": end,
            "frames": len(indices) + len(bad),
            "seconds": time.perf_counter() - t0,
            "pid": os.getpid(),
        }
