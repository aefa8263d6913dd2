"""Typed training configuration (``perception train CONFIG``), loaded with ``perception.config.load_config``.

Unknown keys, missing keys and wrong types are errors naming the file and the dotted key. Dataset and
checkpoint paths are relative to the config file unless absolute. See ``configs/train/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "multitask"  # perception.nets.NETS: multitask, separate, tiny
    encoder: str = "tu-mobilenetv4_conv_small"  # any smp encoder name (multitask/separate)
    seg_width: int = 32
    seg_out_stride: int = 4
    det_width: int = 64
    seg_decoder_channels: tuple[int, ...] | None = None  # separate only: smp U-Net decoder widths (default theirs)


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

    car: int = 2
    pedestrian: int = 0
    cyclist: int = 1
    traffic_sign: int = 11


@dataclass(frozen=True)
class InitConfig:
    """Pretrained weights that start a run (``perception.train.init_sources``); the run's contract and
    model card name them."""

    kind: str  # yolox_onnx (arch yolox_nano) or efficientnet_lite0 (arch multitask, encoder timm-tf_efficientnet_lite0)
    path: str | None = None  # the file, relative to the config; efficientnet_lite0 defaults to its PyPI wheel's
    class_rows: ClassRows = field(default_factory=ClassRows)  # yolox_onnx: COCO head rows per class


@dataclass(frozen=True)
class DataSource:
    spec: str  # "kind:path", e.g. "camvid:../../shared/data/camvid"
    split: str = "train"
    repeat: int = 1  # times each sample appears per epoch (weights a small set against a large one)
    lane_autolabel: bool = False  # camvid only: auto-labelled paint as lane positives


@dataclass(frozen=True)
class ValSource:
    spec: str
    split: str = "val"
    max_frames: int | None = None  # None: the whole split


@dataclass(frozen=True)
class DataConfig:
    train: tuple[DataSource, ...]
    val: ValSource | None = None
    workers: int = 1  # DataLoader processes per rank


@dataclass(frozen=True)
class AugmentConfig:
    hflip_p: float = 0.5
    affine_p: float = 0.7
    scale: tuple[float, float] = (0.75, 1.25)
    translate: tuple[float, float] = (-0.1, 0.1)
    rotate: tuple[float, float] = (-5.0, 5.0)
    perspective_p: float = 0.1
    brightness_contrast_p: float = 0.5
    hue_saturation_p: float = 0.3
    blur_p: float = 0.15
    noise_p: float = 0.15
    jpeg_p: float = 0.25
    weather_p: float = 0.05
    night_p: float = 0.0  # low light, night colour cast, headlight glare (perception.data.augment.NightDrive)
    rain_p: float = 0.0
    hood_p: float = 0.0  # the ego car's bonnet over the frame's bottom, labelled background (augment.Bonnet)


@dataclass(frozen=True)
class LossConfig:
    seg_weight: float = 1.0
    det_weight: float = 1.0
    seg_class_weights: tuple[float, ...] = (1.0, 1.0, 3.0)  # background, drivable, lane (thin paint)
    dice_weight: float = 1.0
    box_loss: str = "giou"  # giou, ciou, iou
    cls_loss: str = "bce"  # bce, qfl
    box_weight: float = 2.5
    cls_weight: float = 1.0
    topk: int = 10


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw, sgd
    lr: float = 0.002
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd (nesterov); adamw beta1
    warmup_steps: int = 300
    min_lr_ratio: float = 0.05  # cosine ends at lr * this
    grad_clip: float = 10.0  # max gradient norm; 0 = off


@dataclass(frozen=True)
class TrainConfig:
    name: str  # model name in the contract and checkpoints
    out: str  # run folder: checkpoints, logs
    data: DataConfig
    input_size: tuple[int, int] = (384, 640)  # (H, W)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 10
    batch_size: int = 8  # per rank
    max_steps_per_epoch: int | None = None  # cap (quick runs, tests)
    ema_decay: float = 0.9998
    ema_tau: float = 1000.0  # EMA warm-up: decay * (1 - exp(-updates / tau))
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    freeze_encoder_epochs: int = 0  # transfer learning: train heads only for the first epochs
    init_from: str | None = None  # checkpoint whose weights start this run (fine-tuning)
    init: InitConfig | None = None  # pretrained weights from outside the project (ONNX release, state dict)
    seed: int = 0
    checkpoint_every_min: float = 5.0  # mid-epoch: save a resumable last.pt at most this often (0: every step)
    wall_budget_min: float | None = None  # stop cleanly (last.pt saved) after this much wall time; --resume goes on
    log_every: int = 20  # steps between log lines
    tensorboard: bool = True
    val_metric: str = "fitness"  # epoch metric that picks best.pt
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:N
    threads: int = 0  # torch CPU threads per rank, 0 = torch default
