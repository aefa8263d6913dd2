"""Typed configuration loaded from YAML presets in ``configs/``.

Every section is a frozen dataclass; ``load_config`` checks each key and type against the dataclass and
raises ``ConfigError`` naming the file, the dotted key and what was expected. A field with a few valid values
is a ``Literal`` (the value must be one of them); a number with a range, or a string with a shape, is
``Annotated`` with a ``Check`` (``Range``, ``MultipleOf``, ``Pattern``) that the loader checks too. Modules
never read these objects: ``pipeline.build_pipeline`` maps them to constructor arguments.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from perception.errors import ConfigError

T = TypeVar("T")

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


# --------------------------------------------------------------------------------------------------------
# Value checks the loader applies (``Annotated[float, Range(gt=0)]``). Constructing a dataclass directly
# checks nothing: these are for what a user writes in a YAML file.


class Check:
    """A constraint on a config value beyond its type: ``contains(value)``, and ``describe()`` for the error."""

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Range(Check):
    """A number's bounds: ``ge``/``gt`` below, ``le``/``lt`` above; NaN is never in range."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f">= {_num(self.ge)}" if self.ge is not None else f"> {_num(self.gt)}"
        if high:
            return f"<= {_num(self.le)}" if self.le is not None else f"< {_num(self.lt)}"
        return "a number"


@dataclass(frozen=True)
class MultipleOf(Check):
    """An integer that ``n`` divides (e.g. an input size a network with stride 32 takes)."""

    n: int

    def contains(self, value: int) -> bool:
        return value % self.n == 0

    def describe(self) -> str:
        return f"a multiple of {self.n}"


@dataclass(frozen=True)
class Pattern(Check):
    """A string that must match ``regex`` as a whole; ``describe`` says what that means to a user."""

    regex: str
    description: str

    def contains(self, value: str) -> bool:
        return re.fullmatch(self.regex, value) is not None

    def describe(self) -> str:
        return self.description


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]  # probabilities, score and IoU thresholds, blend weights

BackendName = Literal["auto", "onnxruntime", "torch", "tensorrt"]  # perception.runtime.BACKENDS + "auto"
TorchDevice = Annotated[str, Pattern(r"cpu|cuda(:\d+)?", "cpu, cuda or cuda:N")]
FourCC = Annotated[str, Pattern(r"[ -~]{4}", "4 characters (an OpenCV FourCC such as mp4v, avc1, MJPG)")]


@dataclass(frozen=True)
class BackendConfig:
    name: BackendName = "auto"  # auto (by model file suffix), onnxruntime, torch, tensorrt
    providers: tuple[str, ...] = DEFAULT_PROVIDERS  # onnxruntime: preference order
    threads: NonNegativeInt = 0  # intra-op threads, 0 = one per core
    device: TorchDevice = "cpu"  # torch only


def is_auto_camera(value: str | None) -> bool:
    """``preprocess.camera: auto``: the run estimates its camera (the default)."""
    return isinstance(value, str) and value.strip().lower() == "auto"


def is_no_camera(value: str | None) -> bool:
    """``preprocess.camera: none`` (or null): no camera, lanes in the image only."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


@dataclass(frozen=True)
class PreprocessConfig:
    # camera YAML (intrinsics, distortion, mounting; relative paths are from the config file); "auto": the run
    # estimates its camera from the lane lines (perception.fusion.self_calibration); "none" or null: no camera
    camera: str | None = "auto"
    undistort: bool = False  # needs `camera`
    # x, y, w, h in frame pixels; None = whole frame
    roi: tuple[NonNegativeInt, NonNegativeInt, PositiveInt, PositiveInt] | None = None


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: Fraction | None = None  # None: the model contract's threshold
    iou_threshold: Fraction | None = None  # raw models only (fused models ran NMS in the graph)
    max_dets: PositiveInt | None = None
    class_agnostic: bool = False  # raw models only


@dataclass(frozen=True)
class AutoCameraConfig:
    """What ``camera: auto`` may be told (perception.fusion.self_calibration); unset keeps its own priors."""

    hfov_deg: Annotated[float, Range(gt=0, lt=180)] | None = None  # the lens's horizontal field of view when
    # known (a dashcam's spec sheet, for the frame as recorded): it wins over the file's metadata and the dashes
    lane_width_m: PositiveFloat | None = None  # ego lane width, between line centres, that sets the camera height
    dash_period_m: PositiveFloat | None = None  # one dash plus one gap of the dashed lines on your roads
    height_m: PositiveFloat | None = None  # camera height above the road while no frame shows both ego lines


@dataclass(frozen=True)
class FusionConfig:
    enabled: bool = True  # tracking always; lanes in metres and distances need a camera (auto or a file)
    auto_camera: AutoCameraConfig = field(default_factory=AutoCameraConfig)
    vehicle_width_m: PositiveFloat = 1.8  # ego vehicle, for lane departure and the in-path test
    ldw_trigger_m: float = 0.1  # lane departure warning when a wheel is this close to a line (m; negative: past it)
    ldw_hysteresis_m: NonNegativeFloat = 0.25  # ... and it clears once the wheel is this much further away again
    lane_hold_s: NonNegativeFloat = 1.0  # the ego lane is held this long without any line seen
    fcw_ttc_s: PositiveFloat = 2.5  # forward collision warning below this time to collision (s)
    fcw_hysteresis_s: NonNegativeFloat = 0.5
    fcw_frames: PositiveInt = 2  # consecutive frames below fcw_ttc_s before the warning
    track_high_score: Fraction = 0.5  # ByteTrack: detections from this score match any track
    track_low_score: Fraction = 0.1  # ... from this score they only keep tracks alive
    track_new_score: Fraction = 0.6  # ... from this score they start tracks
    track_max_lost_s: PositiveFloat = 1.0  # a track unmatched this long ends
    track_min_hits: PositiveInt = 2  # matches that confirm a new track


@dataclass(frozen=True)
class OutputConfig:
    jsonl: bool = True
    video: bool = True
    video_fourcc: FourCC = "mp4v"  # OpenCV's pip wheels write mp4v, not H.264
    overlay_alpha: Fraction = 0.45


@dataclass(frozen=True)
class RunnerConfig:
    queue_size: PositiveInt = 8  # decoded frames waiting for inference; bounds memory
    progress: bool = True
    batch_size: PositiveInt = 1  # frames per network call; >1 raises offline throughput, 1 keeps latency lowest


@dataclass(frozen=True)
class LiveConfig:
    """The camera node (`perception camera`). Every output is off unless set; servers bind to 127.0.0.1
    unless an address is given."""

    max_age_ms: PositiveFloat = 200.0  # a frame older than this (capture to processing) is skipped as stale
    stall_timeout_s: PositiveFloat = 3.0  # no frame this long from an open source: reconnect
    reconnect_initial_s: PositiveFloat = 0.5  # back-off between reconnect attempts, doubling ...
    reconnect_max_s: PositiveFloat = 10.0  # ... up to this
    watchdog_s: PositiveFloat = 5.0  # one frame in the pipeline longer than this: the node is "stuck"
    http: str | None = None  # [HOST:]PORT for /health, /metrics, /preview.mjpg
    udp: str | None = None  # HOST:PORT to send one JSON datagram per frame to
    zmq: str | None = None  # ZeroMQ PUB endpoint to bind, e.g. tcp://127.0.0.1:5555
    zmq_topic: str = "perception"
    log_dir: str | None = None  # rotating JSONL files here; relative paths are from the config file
    log_max_mb: PositiveFloat = 100.0  # a new file past this size
    log_keep: PositiveInt = 10  # files kept (the oldest deleted)
    preview_fps: PositiveFloat = 10.0  # MJPEG preview renders per second, only while a client watches
    preview_quality: Annotated[int, Range(ge=0, le=100)] = 75  # JPEG quality
    ros2: bool = False  # publish on ROS 2 topics (needs rclpy and vision_msgs)
    ros2_node: str = "perception_camera"
    ros2_detections_topic: str = "perception/detections"  # vision_msgs/Detection2DArray
    ros2_mask_topic: str = "perception/mask"  # sensor_msgs/Image, mono8 class ids at frame size
    ros2_scene_topic: str = "perception/scene"  # std_msgs/String, the frame's JSON record
    ros2_frame_id: str = "camera"  # header.frame_id of every message


@dataclass(frozen=True)
class PipelineConfig:
    model: str | None = None  # None: the shipped default model
    backend: BackendConfig = field(default_factory=BackendConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    live: LiveConfig = field(default_factory=LiveConfig)


class ConfigValueError(ConfigError):
    """The value has the right type but is not one of the valid ones (a ``Literal`` or a ``Check``)."""


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"list of {len(args)} {_type_name(args[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against type ``tp`` and convert lists to tuples and mappings to dataclasses.

    ``Literal`` values must be one of the listed ones (of the same type: ``true`` is not ``1``);
    ``Annotated`` ``Check``s run after the base type's.
    """
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, source, prefix=f"{key}.")
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = _convert(value, base, key, source)
        for check in checks:
            if isinstance(check, Check) and not check.contains(value):
                raise ConfigValueError(f"{source}: '{key}' must be {check.describe()}, got {value!r}")
        return value
    if origin is Literal:
        valid = typing.get_args(tp)
        if not any(type(value) is type(v) and value == v for v in valid):
            raise ConfigValueError(f"{source}: '{key}' must be one of {', '.join(map(repr, valid))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        # The value fit an option's type (a mapping for a section) but not its values or keys: that message
        # says more than "must be X or null".
        specific = None
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            if option is not type(None):
                try:
                    return _convert(value, option, key, source)
                except ConfigError as err:
                    section = dataclasses.is_dataclass(option) and isinstance(value, dict)
                    if isinstance(err, ConfigValueError) or section:
                        specific = specific or err
        if specific is not None:
            raise specific
        raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {len(value)} values")
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls, include_extras=True)  # extras: keep Annotated's checks
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (valid keys here: {', '.join(names)})")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{source}: missing key '{prefix}{missing[0]}' (required keys here: {', '.join(required)})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()}
    return cls(**kwargs)


def check_config(cfg: T, source: str = "<config>") -> T:
    """Run the load-time checks (types, Literal choices, ranges) on a config built or changed in code, e.g.
    after command-line overrides applied with ``dataclasses.replace``; returns ``cfg``, or raises ConfigError
    naming ``source`` and the dotted key."""
    from_dict(type(cfg), dataclasses.asdict(cfg), source)  # type: ignore[call-overload]
    return cfg


def load_config(path: str | os.PathLike, cls: type[T] = PipelineConfig) -> T:  # type: ignore[assignment]
    """Load a YAML file into ``cls``. Relative paths inside stay relative to the file (see ``resolve``)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return from_dict(cls, data, str(path))


def resolve(path: str | None, config_file: str | os.PathLike | None) -> str | None:
    """A path from a config file, made relative to that file's folder when it is not absolute."""
    if path is None or config_file is None or os.path.isabs(path):
        return path
    return str(Path(config_file).parent / path)
