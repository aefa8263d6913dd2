"""The fleet driver: drives → ranges on a pool of Ray actors → per-drive merges → a fleet summary.

``ray.init(address)`` joins an existing cluster when an address is given (``auto``, ``ray://host:10001``)
and starts a local one with ``workers`` CPUs otherwise, so the same command runs on a laptop and on a
cluster. Each actor loads the model once and takes range after range (two in flight each, so decoding
the next range overlaps the current one's results being stored). Actors are restarted by Ray when their
process dies, and the range they were working on is retried (``max_restarts``, ``max_task_retries``);
range files are written atomically, so a retried range never duplicates frames.

Re-running the same command after a crash skips drives whose ``summary.json`` exists and, within the
others, ranges whose file exists.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.config import PipelineConfig
from perception.errors import ConfigError
from perception.fleet.inputs import FleetInput, local_copy
from perception.fleet.merge import SUMMARY_NAME, range_files
from perception.fleet.ranges import count_frames, plan_ranges, range_name
from perception.fleet.worker import RangeWorker
from perception.progress import Progress

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("fleet commands need Ray: pip install 'perception[fleet]' (or pip install ray)") from None
    return ray


def start_ray(address: str | None, workers: int):
    """Connect to the cluster at ``address``, or start a local one with ``workers`` CPUs."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # Workers import this package from the driver's environment; the working dir is not shipped.
        ray.init(num_cpus=workers, include_dashboard=False, **kwargs)
    return ray


@dataclass
class FleetSummary:
    drives: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    workers: int = 0
    skipped_drives: int = 0  # complete from an earlier run
    ranges_run: int = 0
    ranges_skipped: int = 0  # range files from an earlier run
    worker_restarts: int = 0  # ranges that finished on another process than the one first given them
    failed: dict[str, str] = field(default_factory=dict)  # drive id -> why it could not be completed

    def totals(self) -> dict[str, Any]:
        frames = sum(d["frames"] for d in self.drives)
        hours = sum(d["duration_s"] for d in self.drives) / 3600.0
        per_class: dict[str, int] = {}
        tracked: dict[str, int] = {}
        warnings: dict[str, int] = {}
        for d in self.drives:
            for k, v in d["detections_per_class"].items():
                per_class[k] = per_class.get(k, 0) + v
            for k, v in d["tracked_objects_per_class"].items():
                tracked[k] = tracked.get(k, 0) + v
            for k, v in d["warnings"].items():
                warnings[k] = warnings.get(k, 0) + v
        return {
            "drives": len(self.drives),
            "frames": frames,
            "video_hours": round(hours, 6),
            "wall_s": round(self.wall_s, 3),
            "frames_per_s": round(frames / self.wall_s, 2) if self.wall_s > 0 else None,
            "video_hours_per_wall_hour": round(hours * 3600.0 / self.wall_s, 3) if self.wall_s > 0 else None,
            "workers": self.workers,
            "detections_per_class": dict(sorted(per_class.items())),
            "tracked_objects_per_class": dict(sorted(tracked.items())),
            "warnings": dict(sorted(warnings.items())),
            "warnings_per_hour": {k: round(v / hours, 3) for k, v in sorted(warnings.items())} if hours > 0 else {},
            "frames_failed": sum(d["frames_failed"] for d in self.drives),
            "drives_with_problems": [d["id"] for d in self.drives if d["problems"]],
            "skipped_drives": self.skipped_drives,
            "ranges_run": self.ranges_run,
            "ranges_skipped": self.ranges_skipped,
            "failed_drives": dict(self.failed),
        }

    def format(self) -> str:
        t = self.totals()
        lines = [
            f"fleet: {t['drives']} drives, {t['frames']} frames ({t['video_hours'] * 60:.2f} min of video) in "
            f"{t['wall_s']:.1f} s on {t['workers']} workers: {t['frames_per_s']} frames/s",
            f"ranges: {t['ranges_run']} run, {t['ranges_skipped']} reused from an earlier run; "
            f"drives complete from an earlier run: {t['skipped_drives']}",
            "detections: " + (", ".join(f"{k} {v}" for k, v in t["detections_per_class"].items()) or "none"),
            "warnings per hour: " + (", ".join(f"{k} {v}" for k, v in t["warnings_per_hour"].items()) or "none"),
        ]
        for drive_id, why in self.failed.items():
            lines.append(f"FAILED {drive_id}: {why} (re-run the same command to retry it)")
        if t["drives_with_problems"]:
            lines.append(f"drives with problems (see their summary.json): {', '.join(t['drives_with_problems'])}")
        return "\n".join(lines)


def write_fleet_summary(summary: FleetSummary, out: Path) -> list[Path]:
    """fleet_summary.json (totals + one row per drive) and, with pandas + pyarrow, fleet_drives.parquet."""
    written = [out / "fleet_summary.json"]
    (out / "fleet_summary.json").write_text(
        json.dumps({"totals": summary.totals(), "drives": summary.drives}, indent=2) + "\n"
    )
    try:
        import pandas as pd

        rows = [
            {
                "id": d["id"],
                "uri": d["uri"],
                "frames": d["frames"],
                "frames_failed": d["frames_failed"],
                "duration_s": d["duration_s"],
                **{f"det_{k}": v for k, v in d["detections_per_class"].items()},
                **{f"warnings_{k}": v for k, v in d["warnings"].items()},
            }
            for d in summary.drives
        ]
        pd.DataFrame(rows).to_parquet(out / "fleet_drives.parquet", index=False)
        written.append(out / "fleet_drives.parquet")
    except ImportError:
        log.info("pandas/pyarrow not installed: fleet_drives.parquet not written (the JSON has the same rows)")
    return written


def run_fleet(
    inputs: Sequence[FleetInput],
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    config_file: str | None = None,
    *,
    workers: int = 2,
    range_frames: int = 100,
    batch: int = 4,
    address: str | None = None,
    write_video: bool = False,
    progress: bool = True,
    threads: int = 1,
    max_restarts: int = 3,
    on_workers: Callable[[list[int]], None] | None = None,
) -> FleetSummary:
    """Process every input on a Ray actor pool; write ``OUT/<id>/{results.jsonl, summary.json}`` and
    ``OUT/fleet_summary.json``. Each worker reserves one CPU and runs inference on ``threads`` threads (one
    by default: workers, not threads, are what scales across a cluster). ``on_workers`` receives the
    actors' process ids once they are up."""
    from perception.paths import ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    cache = out / ".cache"
    ray = start_ray(address, workers)
    summary = FleetSummary(workers=workers)
    start = time.perf_counter()
    actor_cls = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=max_restarts)(RangeWorker)
    actors = [actor_cls.remote(config, config_file, threads, batch, str(cache)) for _ in range(workers)]
    pids = ray.get([a.pid.remote() for a in actors])
    if on_workers is not None:
        on_workers(list(pids))

    # Plan: which ranges of which drives still need running.
    todo: list[tuple[FleetInput, int, int | None, Path]] = []
    plans: dict[str, dict[str, Any]] = {}
    for item in inputs:
        drive = out / item.id
        if (drive / SUMMARY_NAME).is_file():
            summary.drives.append(json.loads((drive / SUMMARY_NAME).read_text()))
            summary.skipped_drives += 1
            continue
        frames, fps = count_frames(local_copy(item, cache))
        ranges = plan_ranges(frames, range_frames)
        done = {p.name for p in range_files(drive / "ranges")}
        pending = []
        for s, e in ranges:
            path = drive / "ranges" / range_name(s, e)
            if path.name in done:
                summary.ranges_skipped += 1
            else:
                pending.append((item, s, e, path))
        plans[item.id] = {"item": item, "frames": frames, "fps": fps, "left": len(pending)}
        todo.extend(pending)

    total_frames = sum(p["frames"] or 0 for p in plans.values())
    bar = Progress(total_frames or None, enabled=progress, unit="frames")
    frames_done = 0
    in_flight: dict[Any, tuple[FleetInput, int, int | None, Any]] = {}
    merges: dict[Any, str] = {}
    idle = list(actors) * 2  # two ranges in flight per actor
    queue = list(todo)

    def start_merge(drive_id: str) -> None:
        # On the next actor in turn, behind its queued ranges: a merge is a few ms a frame (fusion, JSON).
        p = plans[drive_id]
        actor = actors[len(merges) % len(actors)]
        ref = actor.merge.remote(
            p["item"], str(out / drive_id), config, config_file, p["frames"], p["fps"], write_video, str(cache)
        )
        merges[ref] = drive_id

    for drive_id, p in plans.items():
        if p["left"] == 0:
            start_merge(drive_id)  # every range was done by an earlier run
    while queue or in_flight or merges:
        while queue and idle:
            item, s, e, path = queue.pop(0)
            actor = idle.pop(0)
            ref = actor.process.remote(item, s, e, str(path))
            in_flight[ref] = (item, s, e, actor)
        ready, _ = ray.wait(list(in_flight) + list(merges), num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in merges:
                drive_id = merges.pop(ref)
                try:
                    drive_summary = ray.get(ref)
                except Exception as err:  # one bad drive must not lose the others' work
                    summary.failed[drive_id] = _cause(err)
                    log.error("drive %s: merge failed: %s", drive_id, summary.failed[drive_id])
                    continue
                summary.drives.append(drive_summary)
                log.info(
                    "drive %s done: %d frames, %.1f s of video%s (%d/%d drives)",
                    drive_id,
                    drive_summary["frames"],
                    drive_summary["duration_s"],
                    f"; problems: {'; '.join(drive_summary['problems'])}" if drive_summary["problems"] else "",
                    len(summary.drives) - summary.skipped_drives,
                    len(plans),
                )
                continue
            item, s, e, actor = in_flight.pop(ref)
            idle.append(actor)
            try:
                result = ray.get(ref)
            except Exception as err:  # a range that keeps failing (a corrupt file) fails its drive only
                why = f"frames {s}-{'end' if e is None else e}: {_cause(err)}"
                summary.failed.setdefault(item.id, why)
                log.error("drive %s: range failed: %s", item.id, why)
                queue[:] = [q for q in queue if q[0].id != item.id]
                continue
            summary.ranges_run += 1
            if result["pid"] not in pids:
                summary.worker_restarts += 1
            frames_done += result["frames"]
            bar.update(frames_done)
            plans[item.id]["left"] -= 1
            if plans[item.id]["left"] == 0 and item.id not in summary.failed:
                start_merge(item.id)
    bar.finish()
    summary.wall_s = time.perf_counter() - start
    order = {item.id: k for k, item in enumerate(inputs)}
    summary.drives.sort(key=lambda d: order.get(d["id"], len(order)))
    write_fleet_summary(summary, out)
    for a in actors:
        ray.kill(a)
    return summary


def _cause(err: BaseException) -> str:
    """The original error's one-line message out of a Ray task error."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__


def fleet_scaling(
    inputs: list[FleetInput],
    out: str | os.PathLike,
    config: PipelineConfig,
    config_file: str | None,
    counts: list[int],
    range_frames: int = 100,
    batch: int = 4,
    address: str | None = None,
    threads: int = 1,
) -> list[tuple[int, int, float, float]]:
    """The same inputs run with each worker count of ``counts`` (ascending), each into a fresh
    ``out/workers_<n>``, on one cluster with room for the largest pool: (workers, frames, wall s, frames/s)."""
    import shutil

    rows = []
    start_ray(address, max(counts))
    for n in counts:
        target = Path(out) / f"workers_{n}"
        shutil.rmtree(target, ignore_errors=True)  # a fresh run: nothing reused from an earlier one
        s = run_fleet(
            inputs,
            target,
            config,
            config_file,
            workers=n,
            range_frames=range_frames,
            batch=batch,
            address=address,
            progress=False,
            threads=threads,
        )
        t = s.totals()
        rows.append((n, t["frames"], s.wall_s, t["frames_per_s"]))
        log.info("%d worker(s): %d frames in %.1f s, %.1f frames/s", n, t["frames"], s.wall_s, t["frames_per_s"])
    return rows


def format_scaling(rows: list[tuple[int, int, float, float]]) -> str:
    """The ``fleet_scaling`` table: frames/s, speed-up over the first row and scaling efficiency."""
    base = rows[0][3] / rows[0][0]
    lines = [
        "workers  frames  wall s  frames/s  speed-up  efficiency",
        "-------  ------  ------  --------  --------  ----------",
    ]
    for n, frames, wall, fps in rows:
        lines.append(
            f"{n:<7}  {frames:<6}  {wall:<6.1f}  {fps:<8.1f}  {fps / rows[0][3]:<8.2f}  {fps / (n * base):.0%}"
        )
    lines.append("efficiency: frames/s ÷ (workers × frames/s of one worker); every worker reserves one CPU")
    return "\n".join(lines)
