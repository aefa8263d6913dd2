"""Typed training configuration (``perception train CONFIG``), loaded with ``perception.config.load_config``.

Unknown keys, missing keys, wrong types, values outside a field's ``Literal`` choices and numbers outside
their ``Range`` are errors naming the file and the dotted key. Dataset and checkpoint paths are relative to
the config file unless absolute. See ``configs/train/*.yaml``.

The choices are those of the code that consumes each field (``tests/test_train_config.py`` holds them
equal): ``Arch`` the networks ``perception.nets.NETS`` builds, ``BoxLoss``/``ClsLoss`` what
``perception.train.losses`` implements, ``InitKind`` ``perception.train.init_sources.INIT_KINDS``,
``DataKind`` ``perception.data.registry.DATASET_KINDS``, ``ValMetric`` the epoch metrics
``perception.train.engine`` computes (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from perception.config import (
    Fraction,
    MultipleOf,
    NonNegativeFloat,
    NonNegativeInt,
    Pattern,
    PositiveFloat,
    PositiveInt,
    Range,
)

Arch = Literal["multitask", "separate", "tiny", "yolox_nano"]
SegOutStride = Literal[2, 4, 8]
BoxLoss = Literal["giou", "ciou", "iou"]
ClsLoss = Literal["bce", "qfl"]
OptimName = Literal["adamw", "sgd"]
InitKind = Literal["yolox_onnx", "efficientnet_lite0"]
DataKind = Literal["camvid", "cityscapes", "bdd100k", "coco", "yolo", "synthetic", "tusimple"]
ValMetric = Literal["fitness", "seg.iou.drivable", "seg.iou.lane", "seg.miou", "det.map50", "det.map"]

_KINDS = get_args(DataKind)
DataSpec = Annotated[str, Pattern(rf"(?:{'|'.join(_KINDS)}):.+", f"KIND:PATH with KIND one of {', '.join(_KINDS)}")]
TrainDevice = Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")]
CocoClassId = Annotated[int, Range(ge=0, le=79)]  # 0-based, the 80-class order
InputSide = Annotated[int, Range(ge=32), MultipleOf(32)]  # the networks take multiples of their stride 32


@dataclass(frozen=True)
class ModelConfig:
    arch: Arch = "multitask"  # perception.nets.NETS: multitask, separate, tiny, yolox_nano
    encoder: str = "tu-mobilenetv4_conv_small"  # any smp encoder name (multitask/separate)
    seg_width: PositiveInt = 32
    seg_out_stride: SegOutStride = 4  # the U-Net decoder stops at this stride
    det_width: PositiveInt = 64
    # separate only: smp U-Net decoder widths (default theirs)
    seg_decoder_channels: tuple[PositiveInt, ...] | None = None


@dataclass(frozen=True)
class ClassRows:
    """For each project detection class, the COCO class id (0-based, 80-class order) whose head row it
    starts from when a COCO detector initialises the network: car ← car, pedestrian ← person, cyclist ←
    bicycle, traffic_sign ← stop sign (COCO has no general traffic-sign class).

    One row each, not the mean of several (car, bus, truck): class rows are logits, and averaging the car
    row with the bus and truck rows lowers every car's score. Measured zero-shot on CamVid val through
    ``perception eval`` (YOLOX-Nano, 288x512): car AP50 0.354 from the car row alone, 0.281 from the mean
    of the three. Buses and trucks are learnt as cars from the labels (the teachers map them so).
    """

    car: CocoClassId = 2
    pedestrian: CocoClassId = 0
    cyclist: CocoClassId = 1
    traffic_sign: CocoClassId = 11


@dataclass(frozen=True)
class InitConfig:
    """Pretrained weights that start a run (``perception.train.init_sources``); the run's contract and
    model card name them."""

    # yolox_onnx (arch yolox_nano) or efficientnet_lite0 (arch multitask, encoder timm-tf_efficientnet_lite0)
    kind: InitKind
    path: str | None = None  # the file, relative to the config; efficientnet_lite0 defaults to its PyPI wheel's
    class_rows: ClassRows = field(default_factory=ClassRows)  # yolox_onnx: COCO head rows per class


@dataclass(frozen=True)
class DataSource:
    spec: DataSpec  # "kind:path", e.g. "camvid:../../shared/data/camvid"
    split: str = "train"
    repeat: PositiveInt = 1  # times each sample appears per epoch (weights a small set against a large one)
    lane_autolabel: bool = False  # camvid only: auto-labelled paint as lane positives


@dataclass(frozen=True)
class ValSource:
    spec: DataSpec
    split: str = "val"
    max_frames: PositiveInt | None = None  # None: the whole split


@dataclass(frozen=True)
class DataConfig:
    train: tuple[DataSource, ...]
    val: ValSource | None = None
    workers: NonNegativeInt = 1  # DataLoader processes per rank (0: in the training process)


@dataclass(frozen=True)
class AugmentConfig:
    hflip_p: Fraction = 0.5
    affine_p: Fraction = 0.7
    scale: tuple[PositiveFloat, PositiveFloat] = (0.75, 1.25)  # zoom factor range
    translate: tuple[float, float] = (-0.1, 0.1)  # shift range, fraction of the size
    rotate: tuple[float, float] = (-5.0, 5.0)  # degrees
    perspective_p: Fraction = 0.1
    brightness_contrast_p: Fraction = 0.5
    hue_saturation_p: Fraction = 0.3
    blur_p: Fraction = 0.15
    noise_p: Fraction = 0.15
    jpeg_p: Fraction = 0.25
    weather_p: Fraction = 0.05
    night_p: Fraction = 0.0  # low light, night colour cast, headlight glare (perception.data.augment.NightDrive)
    rain_p: Fraction = 0.0
    hood_p: Fraction = 0.0  # the ego car's bonnet over the frame's bottom, labelled background (augment.Bonnet)


@dataclass(frozen=True)
class LossConfig:
    seg_weight: NonNegativeFloat = 1.0
    det_weight: NonNegativeFloat = 1.0
    seg_class_weights: tuple[NonNegativeFloat, ...] = (1.0, 1.0, 3.0)  # background, drivable, lane (thin paint)
    dice_weight: NonNegativeFloat = 1.0
    # share of pixels the segmentation cross-entropy averages over, hardest first (1.0: all of them)
    seg_hard_frac: Annotated[float, Range(gt=0, le=1)] = 1.0
    box_loss: BoxLoss = "giou"  # perception.train.losses.BOX_LOSSES
    cls_loss: ClsLoss = "bce"  # perception.train.losses.CLS_LOSSES (qfl: quality focal)
    box_weight: NonNegativeFloat = 2.5
    cls_weight: NonNegativeFloat = 1.0
    topk: PositiveInt = 10  # task-aligned assignment: candidates per object


@dataclass(frozen=True)
class OptimConfig:
    name: OptimName = "adamw"
    lr: PositiveFloat = 0.002
    weight_decay: NonNegativeFloat = 0.05
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9  # sgd (nesterov); adamw beta1
    warmup_steps: NonNegativeInt = 300
    min_lr_ratio: Fraction = 0.05  # cosine ends at lr * this
    grad_clip: NonNegativeFloat = 10.0  # max gradient norm; 0 = off


@dataclass(frozen=True)
class TrainConfig:
    name: str  # model name in the contract and checkpoints
    out: str  # run folder: checkpoints, logs
    data: DataConfig
    input_size: tuple[InputSide, InputSide] = (384, 640)  # (H, W)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 8  # per rank
    max_steps_per_epoch: PositiveInt | None = None  # cap (quick runs, tests)
    ema_decay: Fraction = 0.9998
    ema_tau: PositiveFloat = 1000.0  # EMA warm-up: decay * (1 - exp(-updates / tau))
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    freeze_encoder_epochs: NonNegativeInt = 0  # transfer learning: train heads only for the first epochs
    init_from: str | None = None  # checkpoint whose weights start this run (fine-tuning)
    init: InitConfig | None = None  # pretrained weights from outside the project (ONNX release, state dict)
    seed: Annotated[int, Range(ge=0, le=2**32 - 1)] = 0  # numpy's seed range
    # mid-epoch: save a resumable last.pt at most this often (0: every step)
    checkpoint_every_min: NonNegativeFloat = 5.0
    # stop cleanly (last.pt saved) after this much wall time; --resume goes on
    wall_budget_min: NonNegativeFloat | None = None
    log_every: PositiveInt = 20  # steps between log lines
    tensorboard: bool = True
    # epoch metric that picks best.pt (higher is better; without a val split every epoch has only train_loss,
    # and the lowest train_loss picks it)
    val_metric: ValMetric = "fitness"
    device: TrainDevice = "auto"  # auto (cuda when available), cpu, cuda, cuda:N
    threads: NonNegativeInt = 0  # torch CPU threads per rank, 0 = torch default
