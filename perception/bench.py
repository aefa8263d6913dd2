"""``perception bench``: where the time of a frame goes, for our models and the peer stack, in one process.

Each model (and, with ``--peers``, the peer stack) runs over the same video several times; every run
gives per-stage medians and end-to-end frames/s, and the table shows the median over the runs with their
range. Two modes:

- ``offline``: the ``perception run`` loop (decode thread → inference → writer thread), frames batched
  for the network: throughput.
- ``live``: one frame at a time in one thread, decode to JSONL line, as a camera node sees it: latency
  per frame (p50/p90/p99) and the frames/s it implies.

End to end is "video decode to JSONL" (the annotated video only with ``--video``). The non-network share
is the part of each frame's wall time not spent in the network forward, two ways:

- "in run": 1 − (inference wall ms during the run) × frames/s. Host stages that overlap inference in
  other threads hide in it, but they also slow the forward down by taking cores, and that shows up as a
  longer inference time, so this share understates their cost on a saturated CPU.
- "vs forward alone": 1 − (forward ms measured alone, same batch, nothing else running) × frames/s:
  everything the end-to-end loop adds to the bare network, overlapped or not. The stricter figure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.config import BackendConfig, PipelineConfig, PreprocessConfig
from perception.frames import Frame
from perception.peers import PeerPipeline
from perception.pipeline import Pipeline, build_pipeline
from perception.runner import STAGES, configure_host_threads, peak_rss_mb, run_source
from perception.sinks import JsonlSink, scene_to_json
from perception.sources import BadFrame, open_source

MODES = ("offline", "live")


@dataclass
class BenchRun:
    """One pass over the video."""

    fps: float
    stage_ms: dict[str, float]  # per-stage median ms per frame
    frames: int
    latency_ms: list[float] = field(default_factory=list)  # live mode: decode → JSONL written, per frame


@dataclass
class BenchResult:
    """All runs of one model, and their medians."""

    name: str
    backend: str
    runs: list[BenchRun]
    forward_alone_ms: float | None = None  # network forward per frame, measured alone (same batch)

    @property
    def fps(self) -> float:
        return statistics.median(r.fps for r in self.runs)

    def stage(self, name: str) -> float | None:
        values = [r.stage_ms[name] for r in self.runs if name in r.stage_ms]
        return statistics.median(values) if values else None

    @property
    def non_network_share(self) -> float:
        """Fraction of a frame's wall time outside the network forward (median over runs)."""
        return statistics.median(1.0 - r.stage_ms.get("inference", 0.0) * r.fps / 1e3 for r in self.runs)

    @property
    def non_network_share_vs_alone(self) -> float | None:
        """Fraction of a frame's wall time beyond the network forward measured alone (median over runs)."""
        if self.forward_alone_ms is None:
            return None
        return statistics.median(1.0 - self.forward_alone_ms * r.fps / 1e3 for r in self.runs)

    def latency(self, q: float) -> float | None:
        values = [v for r in self.runs for v in r.latency_ms]
        return float(np.percentile(values, q)) if values else None

    def to_dict(self) -> dict[str, Any]:
        fps = [r.fps for r in self.runs]
        out = {
            "name": self.name,
            "backend": self.backend,
            "fps_median": round(self.fps, 2),
            "fps_range": [round(min(fps), 2), round(max(fps), 2)],
            "stage_median_ms": {s: round(v, 3) for s in STAGES + _CPU_STAGES if (v := self.stage(s)) is not None},
            "non_network_share": round(self.non_network_share, 4),
            "forward_alone_ms": None if self.forward_alone_ms is None else round(self.forward_alone_ms, 3),
            "non_network_share_vs_forward_alone": (
                None if (v := self.non_network_share_vs_alone) is None else round(v, 4)
            ),
            "runs": [{"fps": round(r.fps, 2), "frames": r.frames} for r in self.runs],
        }
        if self.runs[0].latency_ms:
            out["latency_ms"] = {f"p{q}": round(self.latency(q), 2) for q in (50, 90, 99)}
        return out


_CPU_STAGES = ("preprocess_cpu", "postprocess_cpu")


def _live_pass(source_path: str, pipe: Pipeline | PeerPipeline, out: Path, max_frames: int | None) -> BenchRun:
    """Decode, process and write one frame at a time in this thread; latency = decode start → line flushed."""
    source = open_source(source_path)
    jsonl = JsonlSink(out / "results.jsonl")
    stages: dict[str, list[float]] = {}
    latency: list[float] = []
    frames = 0
    start = time.perf_counter()
    try:
        it = iter(source)
        while max_frames is None or frames < max_frames:
            t0 = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                break
            t1 = time.perf_counter()
            if isinstance(frame, BadFrame):
                continue
            result = pipe(frame)
            t2 = time.perf_counter()
            jsonl.write(scene_to_json(result, {"decode": (t1 - t0) * 1e3, **result.timings_ms}))
            t3 = time.perf_counter()
            for k, v in {"decode": (t1 - t0) * 1e3, **result.timings_ms, "write": (t3 - t2) * 1e3}.items():
                stages.setdefault(k, []).append(v)
            latency.append((t3 - t0) * 1e3)
            frames += 1
    finally:
        source.close()
        jsonl.close()
    wall = time.perf_counter() - start
    return BenchRun(
        fps=frames / wall if wall > 0 else 0.0,
        stage_ms={k: statistics.median(v) for k, v in stages.items()},
        frames=frames,
        latency_ms=latency,
    )


def _offline_pass(
    source_path: str, pipe: Pipeline | PeerPipeline, out: Path, max_frames: int | None, batch: int, video: bool
) -> BenchRun:
    summary = run_source(
        open_source(source_path),
        pipe,  # type: ignore[arg-type]  # PeerPipeline has the same calling surface
        out,
        write_video=video,
        max_frames=max_frames,
        progress=False,
        batch_size=batch,
    )
    if summary.problems:
        raise RuntimeError(f"{source_path}: benchmark run had problems: {'; '.join(summary.problems)}")
    return BenchRun(fps=summary.fps, stage_ms=dict(summary.stage_ms), frames=summary.frames_processed)


def forward_alone_ms(pipe: Pipeline | PeerPipeline, source_path: str, batch: int, repeats: int = 30) -> float:
    """Median network forward time per frame (ms) on the video's first ``batch`` frames, nothing else running."""
    source = open_source(source_path)
    frames = []
    for f in source:
        if isinstance(f, Frame):
            frames.append(f)
        if len(frames) >= batch:
            break
    source.close()
    if isinstance(pipe, PeerPipeline):
        seg_net, det_net = pipe.stack.seg, pipe.stack.det
        inputs = [(seg_net.preprocess(f.image), det_net.preprocess(f.image)[0]) for f in frames]

        def forward() -> None:
            for seg_in, det_in in inputs:
                seg_net.run(seg_in)
                det_net.run(det_in)

    else:
        tensor = np.stack([pipe.prepare(f)[0] for f in frames])

        def forward() -> None:
            pipe.backend.infer(tensor)

    for _ in range(3):
        forward()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward()
        times.append((time.perf_counter() - t0) * 1e3 / len(frames))
    return statistics.median(times)


def bench_one(
    name: str,
    pipe: Pipeline | PeerPipeline,
    source_path: str,
    *,
    mode: str = "offline",
    runs: int = 5,
    batch: int = 4,
    video: bool = False,
    max_frames: int | None = None,
    warmup_frames: int = 20,
    log=None,
) -> BenchResult:
    """``runs`` timed passes of ``pipe`` over the video (after a short untimed warm-up pass)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    results = []
    with tempfile.TemporaryDirectory(prefix="perception-bench-") as tmp:
        warmup = min(warmup_frames, max_frames) if max_frames else warmup_frames
        passes = [("warm-up", warmup)] + [(f"run {i + 1}/{runs}", max_frames) for i in range(runs)]
        for label, frames in passes:
            if mode == "live":
                run = _live_pass(source_path, pipe, Path(tmp), frames)
            else:
                run = _offline_pass(source_path, pipe, Path(tmp), frames, batch, video)
            if label != "warm-up":
                results.append(run)
                if log:
                    log(f"{name}: {label}: {run.fps:.1f} frames/s over {run.frames} frames")
    alone = forward_alone_ms(pipe, source_path, batch if mode == "offline" else 1)
    return BenchResult(name, pipe.backend.description, results, forward_alone_ms=alone)


def machine_line(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), inference threads {threads or os.cpu_count()}"


def format_table(results: Sequence[BenchResult], peers: BenchResult | None, mode: str) -> str:
    """The benchmark table: per-stage medians (ms/frame), frames/s with the range over runs, ratios."""
    everything = [*results, *([peers] if peers else [])]
    shown = [s for s in STAGES if any(r.stage(s) is not None for r in everything)]
    header = ["model", "frames/s [range]", *shown, "forward alone", "non-network in run / vs alone"]
    if mode == "live":
        header += ["latency p50/p90/p99 ms"]
    rows = []
    for r in everything:
        fps = [x.fps for x in r.runs]
        row = [r.name, f"{r.fps:.1f} [{min(fps):.1f}-{max(fps):.1f}]"]
        row += [f"{v:.2f}" if (v := r.stage(s)) is not None else "-" for s in shown]
        alone = r.non_network_share_vs_alone
        row.append(f"{r.forward_alone_ms:.2f}" if r.forward_alone_ms is not None else "-")
        row.append(f"{100 * r.non_network_share:.0f} % / " + (f"{100 * alone:.0f} %" if alone is not None else "-"))
        if mode == "live":
            row.append("/".join(f"{r.latency(q):.1f}" for q in (50, 90, 99)))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if peers:
        lines.append("")
        lines += [f"{r.name}: {r.fps / peers.fps:.1f}x the peer stack's frames/s" for r in results]
    missing = [s for s in STAGES if s not in shown]
    if missing:
        lines.append(f"(no {', '.join(missing)} stage in these runs)")
    return "\n".join(lines)


def run_bench(
    source_path: str,
    models: Sequence[str | None],
    *,
    mode: str = "offline",
    runs: int = 5,
    batch: int = 4,
    threads: int = 0,
    peers: bool = False,
    video: bool = False,
    max_frames: int | None = None,
    json_path: str | os.PathLike | None = None,
    camera: str | None = None,
    log=None,
) -> str:
    """Benchmark each model (None = the shipped default) and optionally the peers; return the report text.

    ``camera``: camera YAML, so fusion also fits lanes and measures distances (without it, it only tracks).
    """
    configure_host_threads()
    pre = PreprocessConfig(camera=camera)
    pipes = [
        (
            m or "default",
            build_pipeline(PipelineConfig(model=m, backend=BackendConfig(threads=threads), preprocess=pre)),
        )
        for m in models
    ]
    source = open_source(source_path)
    first = next((f for f in source if not isinstance(f, BadFrame)), None)
    source.close()
    if first is None:
        raise RuntimeError(f"{source_path}: no readable frame")
    head = (
        f"perception bench: {Path(source_path).name} ({source.expected_frames or '?'} frames "
        f"{first.size_hw[1]}x{first.size_hw[0]}), mode {mode}"
        + (f" batch {batch}" if mode == "offline" else " (batch 1)")
        + f", {runs} runs after a warm-up, decode to JSONL{' + annotated video' if video else ''}\n"
        f"machine: {machine_line(threads)}"
    )
    if log:
        log(head)
    results = []
    for name, pipe in pipes:
        label = Path(name).name
        results.append(
            bench_one(
                label, pipe, source_path, mode=mode, runs=runs, batch=batch, video=video, max_frames=max_frames, log=log
            )
        )
    peer_result = None
    if peers:
        peer_pipe = PeerPipeline(threads)
        peer_result = bench_one(
            "peers", peer_pipe, source_path, mode=mode, runs=runs, batch=1, video=video, max_frames=max_frames, log=log
        )
        peer_result.name = peer_pipe.name
    backends = "\n".join(
        f"backend of {r.name}: {r.backend}" for r in [*results, *([peer_result] if peer_result else [])]
    )
    text = "\n".join(
        [
            head,
            backends,
            format_table(results, peer_result, mode),
            f"peak resident memory of this process: {peak_rss_mb():.0f} MB",
        ]
    )
    if json_path:
        Path(json_path).write_text(
            json.dumps(
                {
                    "source": str(source_path),
                    "mode": mode,
                    "batch": batch if mode == "offline" else 1,
                    "runs": runs,
                    "machine": machine_line(threads),
                    "models": [r.to_dict() for r in results],
                    "peers": peer_result.to_dict() if peer_result else None,
                },
                indent=2,
            )
            + "\n"
        )
    return text
