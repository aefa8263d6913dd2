"""Frame → FrameResult: preprocess, infer, unpack, map back to frame pixels. No I/O, no threads.

``build_pipeline`` is the one place a ``PipelineConfig`` becomes constructor arguments.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception.camera_model import CameraModel, load_camera
from perception.config import AutoCameraConfig, FusionConfig, PipelineConfig, is_auto_camera, is_no_camera, resolve
from perception.errors import ConfigError, ModelError
from perception.frames import Detections, Frame, FrameResult, Letterbox
from perception.fusion.scene import SceneFuser
from perception.fusion.self_calibration import AutoCameraSettings, SelfCalibration
from perception.postprocess.network_outputs import DetectionSettings, unpack_outputs
from perception.preprocess import Preprocessor, letterbox_geometry
from perception.runtime import Backend, backend_for_path, build_backend

DEFAULT_MODEL_NAME = "default.onnx"


def default_model_path() -> Path:
    """The shipped default model: $PERCEPTION_MODEL, else models/ of this checkout, else the installed copy."""
    env = os.environ.get("PERCEPTION_MODEL")
    if env:
        return Path(env)
    candidates = [
        Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME,  # source checkout / editable
        Path(sys.prefix) / "share" / "perception" / "models" / DEFAULT_MODEL_NAME,  # pip install .
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelError(f"no default model found (looked in {', '.join(str(c) for c in candidates)}); pass --model FILE")


class Pipeline:
    """Runs frames through one model.

    A whole-frame model (``contract.frame_size``) letterboxes in its graph: the preprocessor then hands the
    frame over unchanged, boxes come back in frame pixels, and only the segmentation map needs the
    frame → network letterbox geometry.

    Args:
        backend: inference backend holding the model and its contract.
        preprocessor: letterbox (and undistortion/ROI) matching the contract's input.
        settings: detection thresholds applied on the host.
        fuser: turns each frame's boxes and masks into a Scene (tracks, lanes, distances, warnings); it is
            stateful, so frames must come in order; None = no fusion (``FrameResult.scene`` stays None).
    """

    def __init__(
        self,
        backend: Backend,
        preprocessor: Preprocessor,
        settings: DetectionSettings,
        fuser: SceneFuser | None = None,
    ):
        contract = backend.contract
        if preprocessor.input_size != tuple(contract.graph_input_size):
            raise ValueError(
                f"preprocessor makes {preprocessor.input_size} inputs, model wants {contract.graph_input_size}"
            )
        if contract.frame_size is not None and (preprocessor.undistort or preprocessor.roi_xywh is not None):
            raise ConfigError(
                f"model '{contract.name}' letterboxes whole {contract.frame_size[1]}x{contract.frame_size[0]} "
                "frames in its graph; undistortion and --roi need a model exported without --frame-size"
            )
        self.backend = backend
        # Where a whole-frame model's graph puts the frame; the seg map lives in that geometry.
        self.graph_letterbox = (
            letterbox_geometry(contract.frame_size, contract.input_size, None, contract.align)
            if contract.frame_size is not None
            else None
        )
        self.preprocessor = preprocessor
        self.settings = settings
        self.contract = contract
        self.fuser = fuser

    def keep_whole_ranking(self) -> None:
        """Keep every box the graph outputs (its own score threshold), not only those above the contract's
        display threshold: for mAP and export checks, which need the whole ranking."""
        self.settings = replace(self.settings, score_threshold=self.contract.score_threshold)

    def prepare(self, frame: Frame) -> tuple[np.ndarray, Letterbox]:
        """Preprocess one frame: (network input uint8 [H, W, 3], its Letterbox). The threaded runner calls
        this in its decode thread, so preprocessing overlaps inference; pass the result to process_batch."""
        if self.graph_letterbox is not None:
            self._check_frame_size([frame])
        return self.preprocessor(frame)

    def process_batch(
        self,
        frames: Sequence[Frame],
        fuse: bool = True,
        prepared: Sequence[tuple[np.ndarray, Letterbox]] | None = None,
    ) -> list[FrameResult]:
        """Frames (any sizes) → one FrameResult each; detections in frame pixels.

        Per-frame timings (ms): preprocess, inference, postprocess are wall clock, the batch's time divided
        by the batch size; preprocess_cpu and postprocess_cpu are the calling thread's CPU time.

        ``fuse``: also run fusion (see :meth:`fuse`); the threaded runner passes False and fuses in its
        writer thread, so fusion overlaps the next batch's inference.
        ``prepared``: :meth:`prepare`'s output for each frame, when it was already done elsewhere (the
        preprocess timings are then not set here).
        """
        if not frames:
            return []
        if self.graph_letterbox is not None:
            self._check_frame_size(frames)
        t0, c0 = time.perf_counter(), time.thread_time()
        if prepared is not None and len(prepared) != len(frames):
            raise ValueError(f"{len(prepared)} prepared inputs for {len(frames)} frames")
        done_before = prepared is not None
        prepared = list(prepared) if prepared is not None else [self.preprocessor(f) for f in frames]
        t1, c1 = time.perf_counter(), time.thread_time()
        outputs = self.backend.infer(np.stack([p[0] for p in prepared]))
        t2, c2 = time.perf_counter(), time.thread_time()
        unpacked = unpack_outputs(outputs, self.contract, self.settings)
        results = []
        for frame, (_, lb), (seg, dets_in) in zip(frames, prepared, unpacked, strict=True):
            dets = (
                Detections(lb.boxes_to_frame(dets_in.boxes_xyxy), dets_in.scores, dets_in.labels)
                if len(dets_in)
                else dets_in
            )
            results.append((frame, self.graph_letterbox or lb, seg, dets))
        t3, c3 = time.perf_counter(), time.thread_time()
        n = len(frames)
        # Wall clock per stage, plus this thread's CPU time for the host stages: on a saturated CPU the
        # wall time also counts waiting for a core, the CPU time is what the stage itself costs.
        timings = {
            "preprocess": (t1 - t0) * 1e3 / n,
            "inference": (t2 - t1) * 1e3 / n,
            "postprocess": (t3 - t2) * 1e3 / n,
            "preprocess_cpu": (c1 - c0) * 1e3 / n,
            "postprocess_cpu": (c3 - c2) * 1e3 / n,
        }
        if done_before:
            del timings["preprocess"], timings["preprocess_cpu"]
        out = []
        for frame, lb, seg, dets in results:
            result = FrameResult(
                frame_index=frame.index,
                timestamp_s=frame.timestamp_s,
                frame_size=frame.size_hw,
                detections=dets,
                det_class_names=self.contract.det_classes,
                seg=seg,
                letterbox=lb,
                timings_ms=timings,
            )
            out.append(self.fuse(result) if fuse else result)
        return out

    def fuse(self, result: FrameResult) -> FrameResult:
        """Add the fused scene (tracks, lanes, distances, warnings) and its time ("fusion", ms).

        Stateful: call once per frame, in frame order. Without a fuser the result comes back unchanged.
        """
        if self.fuser is None:
            return result
        t0 = time.perf_counter()
        scene = self.fuser.update(result)
        return replace(
            result, scene=scene, timings_ms={**result.timings_ms, "fusion": (time.perf_counter() - t0) * 1e3}
        )

    def _check_frame_size(self, frames: Sequence[Frame]) -> None:
        fs = self.contract.frame_size
        for frame in frames:
            if frame.size_hw != tuple(fs):
                raise ConfigError(
                    f"{frame.source}: frame is {frame.size_hw[1]}x{frame.size_hw[0]}, model '{self.contract.name}' "
                    f"was exported for whole {fs[1]}x{fs[0]} frames; export it with --frame-size "
                    f"{frame.size_hw[1]}x{frame.size_hw[0]} or use a model without --frame-size"
                )

    def __call__(self, frame: Frame) -> FrameResult:
        return self.process_batch([frame])[0]


def build_pipeline(
    config: PipelineConfig, config_file: str | os.PathLike | None = None, media: str | os.PathLike | None = None
) -> Pipeline:
    """Map a PipelineConfig (paths relative to ``config_file``) to a ready Pipeline. ``media``: the video or
    image folder it will run on, whose metadata may give a self-calibrating camera its focal length."""
    model = resolve(config.model, config_file)
    model_path = Path(model) if model else default_model_path()
    bc = config.backend
    kind = backend_for_path(model_path) if bc.name == "auto" else bc.name
    kwargs: dict = {"threads": bc.threads}
    if kind == "onnxruntime":
        kwargs["providers"] = bc.providers
    elif kind == "torch":
        kwargs["device"] = bc.device
    backend = build_backend(kind, model_path, **kwargs)
    contract = backend.contract
    pc = config.preprocess
    fused_camera = build_fusion_camera(pc.camera, config_file, media, config.fusion.auto_camera)
    camera = None if isinstance(fused_camera, SelfCalibration) else fused_camera
    preprocessor = Preprocessor(
        input_size=contract.graph_input_size,
        color=contract.color,
        pad_value=contract.pad_value,
        align=contract.align,
        camera=camera,
        undistort=pc.undistort,
        roi_xywh=pc.roi,
    )
    post = config.postprocess
    settings = DetectionSettings.from_contract(
        contract, post.score_threshold, post.iou_threshold, post.max_dets, post.class_agnostic
    )
    fuser = (
        build_fuser(config.fusion, contract.det_classes, contract.seg_classes, fused_camera, pc.undistort)
        if config.fusion.enabled
        else None
    )
    return Pipeline(backend, preprocessor, settings, fuser)


def build_fusion_camera(
    camera: str | None,
    config_file: str | os.PathLike | None = None,
    media: str | os.PathLike | None = None,
    auto: AutoCameraConfig | None = None,
) -> CameraModel | SelfCalibration | None:
    """The camera a ``preprocess.camera`` value gives fusion: the model of a camera file (relative to
    ``config_file``), a ``SelfCalibration`` for ``auto`` (with what ``auto`` (``fusion.auto_camera``) tells
    it, and its focal length from the metadata of ``media``, the video or image folder it will run on, where
    that has one), or None for ``none``."""
    if is_auto_camera(camera):
        auto = auto or AutoCameraConfig()
        given = {
            "known_hfov_deg": auto.hfov_deg,
            "lane_width_m": auto.lane_width_m,
            "dash_period_m": auto.dash_period_m,
            "height_m": auto.height_m,
        }
        settings = AutoCameraSettings(**{k: v for k, v in given.items() if v is not None})
        return SelfCalibration(settings, focal_hint=_focal_hint(media))
    if is_no_camera(camera):
        return None
    return load_camera(resolve(camera, config_file))


def _focal_hint(media: str | os.PathLike | None):
    """The focal length in the metadata of ``media`` (a file, or a folder's first image), or None."""
    from perception.camera_metadata import focal_from_metadata

    if media is None:
        return None
    path = Path(media)
    if path.is_dir():
        path = next((f for f in sorted(path.iterdir()) if f.suffix.lower() in (".jpg", ".jpeg")), None)
    return focal_from_metadata(path) if path is not None and path.is_file() else None


def build_fuser(
    fc: FusionConfig,
    det_classes: Sequence[str],
    seg_classes: Sequence[str],
    camera: CameraModel | SelfCalibration | None,
    undistorted_frame: bool,
) -> SceneFuser:
    """Map a FusionConfig to a SceneFuser for these class names (camera None: lanes in the image only)."""
    from perception.fusion.ego_lane import LaneFilter
    from perception.fusion.scene import WarningSettings
    from perception.fusion.tracking import ByteTracker

    return SceneFuser(
        det_classes=tuple(det_classes),
        seg_classes=tuple(seg_classes),
        camera=camera,
        undistorted_frame=undistorted_frame,
        tracker=ByteTracker(
            high_score=fc.track_high_score,
            low_score=fc.track_low_score,
            new_track_score=fc.track_new_score,
            max_lost_s=fc.track_max_lost_s,
            min_hits=fc.track_min_hits,
        ),
        lane_filter=LaneFilter(
            vehicle_width_m=fc.vehicle_width_m,
            ldw_trigger_m=fc.ldw_trigger_m,
            ldw_hysteresis_m=fc.ldw_hysteresis_m,
            hold_s=fc.lane_hold_s,
        ),
        warnings=WarningSettings(
            fcw_ttc_s=fc.fcw_ttc_s, fcw_hysteresis_s=fc.fcw_hysteresis_s, fcw_frames=fc.fcw_frames
        ),
        vehicle_width_m=fc.vehicle_width_m,
    )
