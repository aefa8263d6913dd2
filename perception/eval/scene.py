"""Fusion measured against the synthetic world's truth: lateral offset, curvature and lane F1, distance
error by range, TTC error, and tracking (MOTA, IDF1, id switches), over synthetic clips.

Clips come from ``perception synth --clips K`` (split ``clips``); every frame's meta holds the camera, the
ego car's true place in its lane, the painted lines in the vehicle frame and each object's track id,
position and size. Two ways to produce what fusion consumes:

- ``oracle``: the true masks and boxes (scores 0.9): measures fusion alone (geometry, fitting, tracking);
- a model: the pipeline's own masks and boxes: measures the product end to end.

Object distance truth is the ground distance to the object's near face (centre minus half its length
along the road): the box bottom shows where the object's nearest part meets the road, not its centre.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.camera_model import CameraModel, camera_from_dict
from perception.data.base import Dataset
from perception.data.sample import Sample
from perception.eval.tracking import MotAccumulator
from perception.frames import AutoCamera, Detections, Frame, FrameResult, Letterbox, SegMap
from perception.fusion.scene import SceneFuser
from perception.postprocess.nms import box_iou

RANGE_BUCKETS_M = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, math.inf))
LANE_MATCH_M = 0.4  # a predicted line matches a true one when their mean lateral gap is below this
LANE_PROBE_M = (6.0, 30.0)  # forward range over which lines are compared
# Tracking is also scored on the objects within this distance only (farther ones as ignore regions): most
# id switches of the full count are objects beyond 100 m a few pixels tall, hidden for seconds.
NEAR_TRACKING_M = 60.0


def _greedy_pairs(score: np.ndarray, threshold: float, larger_is_better: bool = True) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs by score (good enough for a handful of lines or boxes per frame)."""
    pairs = []
    if score.size == 0:
        return pairs
    s = score if larger_is_better else -score
    t = threshold if larger_is_better else -threshold
    used_r, used_c = set(), set()
    for flat in np.argsort(-s, axis=None):
        r, c = np.unravel_index(flat, s.shape)
        if s[r, c] < t:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((int(r), int(c)))
        used_r.add(r)
        used_c.add(c)
    return pairs


@dataclass
class SceneMetrics:
    """Accumulated errors over frames; ``summary()`` reduces them."""

    offset_err: list[float] = field(default_factory=list)
    heading_err: list[float] = field(default_factory=list)
    curvature_err: list[float] = field(default_factory=list)
    width_err: list[float] = field(default_factory=list)
    ego_frames: int = 0  # frames whose truth has both ego lines visible
    ego_found: int = 0
    lane_tp: int = 0
    lane_fp: int = 0
    lane_fn: int = 0
    dist_rel_err: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    dist_in_sigma: list[bool] = field(default_factory=list)
    ttc_err: list[float] = field(default_factory=list)
    mot: MotAccumulator = field(default_factory=MotAccumulator)
    mot_near: MotAccumulator = field(default_factory=MotAccumulator)  # objects within NEAR_TRACKING_M
    frames: int = 0
    clips: int = 0
    # camera: auto, over the scored frames: the estimate against the clip's true camera
    auto_frames: int = 0
    auto_calibrated: int = 0
    pitch_err_deg: list[float] = field(default_factory=list)
    yaw_err_deg: list[float] = field(default_factory=list)
    height_rel_err: list[float] = field(default_factory=list)
    hfov_err_deg: list[float] = field(default_factory=list)

    def merge(self, other: SceneMetrics) -> SceneMetrics:
        """Both runs pooled (several clip sets): errors concatenated, counts summed, clips kept as separate
        tracking sequences. Neither input is changed."""
        out = SceneMetrics()
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, MotAccumulator):
                value = a.merge(b)
            elif isinstance(a, list):
                value = a + b
            elif isinstance(a, dict):
                value = defaultdict(list, {k: a.get(k, []) + b.get(k, []) for k in a.keys() | b.keys()})
            else:
                value = a + b
            setattr(out, f.name, value)
        return out

    def summary(self) -> dict:
        def med(v):
            return float(np.median(np.abs(v))) if len(v) else None

        def p90(v):
            return float(np.percentile(np.abs(v), 90)) if len(v) else None

        prec = self.lane_tp / max(self.lane_tp + self.lane_fp, 1)
        rec = self.lane_tp / max(self.lane_tp + self.lane_fn, 1)
        mot = self.mot.result()
        buckets = {}
        for i, (lo, hi) in enumerate(RANGE_BUCKETS_M):
            errs = self.dist_rel_err.get(i, [])
            label = f"{lo:.0f}-{hi:.0f}m" if math.isfinite(hi) else f"{lo:.0f}m+"
            buckets[label] = {
                "n": len(errs),
                "median_rel_err": med(errs),
                "p90_rel_err": p90(errs),
            }
        upto40 = self.dist_rel_err.get(0, []) + self.dist_rel_err.get(1, [])
        return {
            "clips": self.clips,
            "frames": self.frames,
            "ego_lane": {
                "frames_with_truth": self.ego_frames,
                "found_fraction": self.ego_found / max(self.ego_frames, 1),
                "median_offset_err_m": med(self.offset_err),
                "p90_offset_err_m": p90(self.offset_err),
                "median_heading_err_rad": med(self.heading_err),
                "median_curvature_err_1pm": med(self.curvature_err),
                "median_width_err_m": med(self.width_err),
            },
            "lane_lines": {
                "tp": self.lane_tp,
                "fp": self.lane_fp,
                "fn": self.lane_fn,
                "precision": prec,
                "recall": rec,
                "f1": 2 * prec * rec / max(prec + rec, 1e-9),
            },
            "distance": {
                "by_range": buckets,
                "median_rel_err_upto_40m": med(upto40),
                "within_1_sigma": float(np.mean(self.dist_in_sigma)) if self.dist_in_sigma else None,
            },
            "ttc": {"n": len(self.ttc_err), "median_abs_err_s": med(self.ttc_err), "p90_abs_err_s": p90(self.ttc_err)},
            "tracking": mot.to_dict(),
            f"tracking_within_{NEAR_TRACKING_M:.0f}m": self.mot_near.result().to_dict(),
            "auto_camera": None
            if not self.auto_frames
            else {
                "calibrated_fraction": self.auto_calibrated / self.auto_frames,
                "median_pitch_err_deg": med(self.pitch_err_deg),
                "median_yaw_err_deg": med(self.yaw_err_deg),
                "median_height_rel_err": med(self.height_rel_err),
                "median_hfov_err_deg": med(self.hfov_err_deg),
                "p90_pitch_err_deg": p90(self.pitch_err_deg),
                "p90_yaw_err_deg": p90(self.yaw_err_deg),
            },
        }


def _truth_near_distance(obj: dict) -> float:
    x, y, _ = obj["position_m"]
    half = obj["size_m"][0] / 2
    xn = x - half if x > half else max(x, 0.0)
    return math.hypot(xn, y)


def oracle_result(
    sample: Sample, index: int, timestamp_s: float, det_classes: tuple[str, ...], seg_classes: tuple[str, ...]
) -> FrameResult:
    """The truth as perception output: true mask (not-modelled pixels as background), true boxes at 0.9;
    ``det_classes`` / ``seg_classes`` are the dataset's (what its label ids index)."""
    h, w = sample.seg.shape
    seg = np.where(sample.seg == 255, 0, sample.seg).astype(np.uint8)
    lb = Letterbox((h, w), (h, w), (0, 0, w, h), 1.0, 0, 0)
    keep = ~np.asarray(sample.ignore, bool)
    dets = Detections(sample.boxes[keep], np.full(int(keep.sum()), 0.9, np.float32), sample.labels[keep])
    return FrameResult(
        frame_index=index,
        timestamp_s=timestamp_s,
        frame_size=(h, w),
        detections=dets,
        det_class_names=det_classes,
        seg=SegMap(seg, seg_classes),
        letterbox=lb,
    )


def clips_of(dataset: Dataset) -> Iterator[list[int]]:
    """Sample indices grouped by clip (the name's first part, "clip_003/000012"), in frame order."""
    groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i in range(len(dataset)):
        name = dataset.names[i]
        clip = name.split("/")[0]
        groups[clip].append((int(name.rsplit("/", 1)[-1]), i))
    for clip in sorted(groups):
        yield [i for _, i in sorted(groups[clip])]


def evaluate_scene(
    dataset: Dataset, make_fuser, perceive=None, max_clips: int | None = None, score_after_s: float = 0.0
) -> SceneMetrics:
    """Run fusion over every clip of ``dataset`` and compare with its truth.

    Args:
        dataset: a synthetic dataset's ``clips`` split.
        make_fuser: the clip's true camera → a fresh SceneFuser (one per clip; a self-calibrating fuser
            ignores it and is scored against it).
        perceive: (Frame) → FrameResult, e.g. a Pipeline; None = the oracle (true masks and boxes).
        max_clips: stop after this many clips.
        score_after_s: frames before this time into each clip go through fusion but are not scored (a
            self-calibrating camera's first seconds).
    """
    m = SceneMetrics()
    for n_clip, indices in enumerate(clips_of(dataset)):
        if max_clips is not None and n_clip >= max_clips:
            break
        m.clips += 1
        m.mot.new_sequence()
        m.mot_near.new_sequence()
        fuser: SceneFuser | None = None
        history: dict[int, list[tuple[float, float]]] = defaultdict(list)  # true track id → (t, distance)
        for k, i in enumerate(indices):
            sample = dataset[i]
            meta = sample.meta
            t = float(meta.get("timestamp_s", k / float(meta.get("fps", 10.0))))
            if fuser is None:
                fuser = make_fuser(camera_from_dict(meta["camera"], f"{dataset.names[i]} meta"))
            if perceive is None:
                result = oracle_result(sample, k, t, dataset.det_classes, dataset.seg_classes)
            else:
                result = perceive(Frame(k, t, sample.image, dataset.names[i]))
            scene = fuser.update(result)
            if t < score_after_s:
                continue
            m.frames += 1
            _score_lanes(m, meta, scene)
            _score_objects(m, meta, scene, history, t)
            if isinstance(scene.camera, AutoCamera):
                _score_auto_camera(m, camera_from_dict(meta["camera"], "meta"), scene.camera)
    return m


def _score_auto_camera(m: SceneMetrics, truth: CameraModel, est: AutoCamera) -> None:
    m.auto_frames += 1
    if est.state != "calibrated":
        return
    m.auto_calibrated += 1
    mt = truth.mounting
    m.pitch_err_deg.append(est.pitch_deg - mt.pitch_deg)
    m.yaw_err_deg.append(est.yaw_deg - mt.yaw_deg)
    m.height_rel_err.append(est.height_m / mt.height_m - 1)
    m.hfov_err_deg.append(est.hfov_deg - truth.hfov_deg)


def _score_lanes(m: SceneMetrics, meta: dict, scene) -> None:
    truth = meta["ego"]
    gt_lines = [ln for ln in meta["lanes"] if len(ln["points_image"]) >= 2]
    sides = {ln["side"] for ln in gt_lines}
    if {"ego_left", "ego_right"} <= sides:
        m.ego_frames += 1
        ego = scene.ego_lane
        if ego is not None:
            m.ego_found += 1
            m.offset_err.append(ego.offset_m - truth["lateral_offset_m"])
            m.heading_err.append(ego.heading_error_rad - truth["heading_error_rad"])
            m.curvature_err.append(ego.curvature_1pm - truth["curvature_1pm"])
            m.width_err.append(ego.width_m - truth["lane_width_m"])
    # Lane F1: true lines within 8 m either side, seen in the image, compared over LANE_PROBE_M.
    probe = np.arange(LANE_PROBE_M[0], LANE_PROBE_M[1] + 0.1, 1.0)
    gt_y = []
    for ln in gt_lines:
        pts = np.asarray(ln["points_vehicle_m"], np.float64)
        if len(pts) < 2 or abs(np.interp(LANE_PROBE_M[0], pts[:, 0], pts[:, 1])) > 8.0:
            continue
        gt_y.append(np.interp(probe, pts[:, 0], pts[:, 1]))
    pred = [ln for ln in scene.lanes if ln.in_metres and abs(ln.y_at(LANE_PROBE_M[0])) <= 9.0]
    gap = np.full((len(gt_y), len(pred)), np.inf)
    for a, gy in enumerate(gt_y):
        for b, ln in enumerate(pred):
            lo, hi = max(probe[0], ln.x_range_m[0]), min(probe[-1], max(ln.x_range_m[1], probe[0] + 5))
            sel = (probe >= lo) & (probe <= hi)
            if sel.sum() >= 3:
                gap[a, b] = float(np.mean(np.abs(ln.y_at(probe[sel]) - gy[sel])))
    pairs = _greedy_pairs(gap, LANE_MATCH_M, larger_is_better=False)
    m.lane_tp += len(pairs)
    m.lane_fn += len(gt_y) - len(pairs)
    m.lane_fp += len(pred) - len(pairs)


def _score_objects(m: SceneMetrics, meta: dict, scene, history: dict, t: float) -> None:
    objs = meta["objects"]
    gt_boxes = np.array([o["box"] for o in objs], np.float64).reshape(-1, 4)
    gt_ids = [o["track_id"] for o in objs]
    gt_ignore = np.array([o["ignore"] for o in objs], bool)
    hyp = list(scene.objects)
    hyp_boxes = np.array([o.track.box_xyxy for o in hyp], np.float64).reshape(-1, 4)
    hyp_ids = [o.track.track_id for o in hyp]
    truth_d = {}
    for o in objs:
        d = _truth_near_distance(o)
        truth_d[o["track_id"]] = d
        history[o["track_id"]].append((t, d))
    m.mot.update(gt_ids, gt_boxes, hyp_ids, hyp_boxes, gt_ignore)
    far = np.array([truth_d[o["track_id"]] > NEAR_TRACKING_M for o in objs], bool)
    m.mot_near.update(gt_ids, gt_boxes, hyp_ids, hyp_boxes, gt_ignore | far)
    pairs = _greedy_pairs(box_iou(gt_boxes, hyp_boxes), 0.5)
    for g, h in pairs:
        o, so = objs[g], hyp[h]
        if o["ignore"] or so.distance_m is None or o["class"] == "traffic_sign":
            continue
        d_true = truth_d[o["track_id"]]
        if d_true < 1.0:
            continue
        rel = (so.distance_m - d_true) / d_true
        bucket = next(i for i, (lo, hi) in enumerate(RANGE_BUCKETS_M) if lo <= d_true < hi)
        m.dist_rel_err[bucket].append(rel)
        if so.distance_sigma_m:
            m.dist_in_sigma.append(abs(so.distance_m - d_true) <= so.distance_sigma_m)
        ttc_true = _truth_ttc(history[o["track_id"]])
        if so.ttc_s is not None and ttc_true is not None and ttc_true < 10.0:
            m.ttc_err.append(so.ttc_s - ttc_true)


def _truth_ttc(hist: list[tuple[float, float]]) -> float | None:
    """TTC from the true distances: distance over the closing speed of the last 0.3 s; None if not closing."""
    if len(hist) < 2:
        return None
    t1, d1 = hist[-1]
    t0, d0 = next(((t, d) for t, d in reversed(hist) if t1 - t >= 0.3 - 1e-6), hist[0])
    if t1 <= t0:
        return None
    closing = (d0 - d1) / (t1 - t0)
    return d1 / closing if closing > 0.5 else None


def format_summary(name: str, s: dict) -> str:
    """A few lines for the terminal: the quantities issue #7 sets targets on, then the rest."""
    ego, dist, trk, ln, ttc = s["ego_lane"], s["distance"], s["tracking"], s["lane_lines"], s["ttc"]
    near = s[f"tracking_within_{NEAR_TRACKING_M:.0f}m"]

    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        f"{name}: {s['clips']} clips, {s['frames']} frames",
        f"  ego lane: found in {ego['found_fraction']:.1%} of {ego['frames_with_truth']} frames with both lines; "
        f"median |offset error| {f(ego['median_offset_err_m'], '.3f')} m (p90 {f(ego['p90_offset_err_m'], '.3f')}), "
        f"heading {f(ego['median_heading_err_rad'], '.4f')} rad, "
        f"curvature {f(ego['median_curvature_err_1pm'], '.5f')} 1/m, "
        f"width {f(ego['median_width_err_m'], '.3f')} m",
        f"  lane lines: F1 {ln['f1']:.3f} (precision {ln['precision']:.3f}, recall {ln['recall']:.3f}; "
        f"match = mean gap < {LANE_MATCH_M} m over {LANE_PROBE_M[0]:.0f}-{LANE_PROBE_M[1]:.0f} m)",
        f"  distance: median |relative error| up to 40 m {f(dist['median_rel_err_upto_40m'], '.1%')}; "
        + ", ".join(f"{k} {f(v['median_rel_err'], '.1%')} (n {v['n']})" for k, v in dist["by_range"].items())
        + f"; within 1 sigma {f(dist['within_1_sigma'], '.0%')}",
        f"  TTC (true TTC < 10 s): median |error| {f(ttc['median_abs_err_s'], '.2f')} s, "
        f"p90 {f(ttc['p90_abs_err_s'], '.2f')} s (n {ttc['n']})",
        f"  tracking: MOTA {trk['mota']:.3f}, IDF1 {trk['idf1']:.3f}, id switches {trk['idsw']} = "
        f"{trk['idsw_per_100']:.2f} per 100 track-frames, recall {trk['recall']:.3f}, precision {trk['precision']:.3f}",
        f"    objects within {NEAR_TRACKING_M:.0f} m: MOTA {near['mota']:.3f}, IDF1 {near['idf1']:.3f}, id switches "
        f"{near['idsw']} = {near['idsw_per_100']:.2f} per 100, recall {near['recall']:.3f}",
    ]
    auto = s.get("auto_camera")
    if auto:
        lines.append(
            f"  camera auto: calibrated on {auto['calibrated_fraction']:.0%} of the scored frames; median |error| "
            f"pitch {f(auto['median_pitch_err_deg'], '.2f')} deg (p90 {f(auto['p90_pitch_err_deg'], '.2f')}), "
            f"yaw {f(auto['median_yaw_err_deg'], '.2f')} deg (p90 {f(auto['p90_yaw_err_deg'], '.2f')}), "
            f"height {f(auto['median_height_rel_err'], '.1%')}, hfov {f(auto['median_hfov_err_deg'], '.1f')} deg"
        )
    return "\n".join(lines)


def evaluate_scene_sets(
    datasets: list[tuple[str, Dataset]],
    models: list[str],
    camera: str = "truth",
    max_clips: int | None = None,
    score_after_s: float = 0.0,
    echo: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Fusion of each model (``oracle``: the true masks and boxes; ``default``; a model file) over the clips of
    every (name, dataset) in ``datasets``: a summary per model, the sets pooled, with each set's own summary
    under ``per_set`` when there are several. ``camera``: ``truth`` gives fusion each clip's true camera,
    ``auto`` the self-calibration, ``auto-hfov`` the self-calibration told the clip's true field of view.
    ``echo`` gets each summary as it is done (``format_summary``)."""
    from perception.config import AutoCameraConfig, FusionConfig, PipelineConfig
    from perception.fusion.self_calibration import SelfCalibration
    from perception.pipeline import build_fuser, build_fusion_camera, build_pipeline

    fusion = FusionConfig()
    out: dict[str, dict] = {}
    for name in models:
        pipeline = None
        if name != "oracle":
            cfg = PipelineConfig(model=None if name == "default" else str(Path(name).resolve()))
            cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, enabled=False))
            pipeline = build_pipeline(cfg)
        pooled: SceneMetrics | None = None
        per_set = {}
        for spec, dataset in datasets:
            if pipeline is None:  # the oracle: the truth's own classes
                classes, perceive = (dataset.det_classes, dataset.seg_classes), None
            else:
                classes, perceive = (pipeline.contract.det_classes, pipeline.contract.seg_classes), pipeline
            if camera == "auto":

                def make_fuser(_true_camera, c=classes):
                    return build_fuser(fusion, *c, SelfCalibration(), undistorted_frame=False)
            elif camera == "auto-hfov":

                def make_fuser(true_camera, c=classes):
                    # what `perception run --hfov` gives the self-calibration
                    told = build_fusion_camera("auto", auto=AutoCameraConfig(hfov_deg=true_camera.hfov_deg))
                    return build_fuser(fusion, *c, told, undistorted_frame=False)
            else:

                def make_fuser(true_camera, c=classes):
                    return build_fuser(fusion, *c, true_camera, undistorted_frame=False)

            metrics = evaluate_scene(dataset, make_fuser, perceive, max_clips=max_clips, score_after_s=score_after_s)
            if len(datasets) > 1:
                per_set[spec] = metrics.summary()
                echo(format_summary(f"{name} on {spec}", per_set[spec]))
            pooled = metrics if pooled is None else pooled.merge(metrics)
        summary = pooled.summary()
        if per_set:
            summary["per_set"] = per_set
        out[name] = summary
        echo(format_summary(f"{name}, {len(datasets)} sets pooled" if per_set else name, summary))
    return out
