"""The training loop: one code path for CPU, one GPU and ``torchrun`` DDP (NCCL on GPU, gloo on CPU).

Per epoch: train (AdamW/SGD, warm-up + cosine per step, gradient clipping, AMP on CUDA, EMA weights),
then validate the EMA weights on the whole validation split (rank 0), log to CSV and TensorBoard, and save
``best.pt`` and ``last.pt`` atomically. A non-finite loss stops the run with the step and the last good
checkpoint.

Training spans sessions. ``last.pt`` is the one resume point: written at every epoch end and, mid-epoch,
after an optimizer step at most every ``checkpoint_every_min`` minutes; ``wall_budget_min`` stops the run
cleanly (``last.pt`` saved, logs flushed) once this process has run that long. ``resume=True``
(``perception train CONFIG --resume``) continues from ``last.pt`` bit for bit: on CPU with ``threads``
fixed, a run killed at any step and resumed ends with the weights, EMA, optimizer state and logged losses of
an uninterrupted one. The data order of an epoch is a function of (seed, epoch) (``EpochSampler``), so a
resumed epoch skips the batches done without loading them, on every rank; rows of ``steps.csv`` /
``epochs.csv`` (and TensorBoard events) logged after the checkpoint are dropped and replayed.

Checkpoints are model checkpoints (``perception.nets.checkpoints``): ``state_dict`` holds the EMA
weights (what is exported and evaluated); ``train_state`` holds the rest: ``model`` (raw weights),
``optimizer``, ``scheduler``, ``scaler`` (GradScaler), ``ema_updates``, ``epoch`` (0-based; the epoch in
progress when ``mid_epoch``, else the last one finished), ``step`` (optimizer steps in all), ``epoch_step``
(steps done in ``epoch``), ``epoch_losses`` and ``epoch_wall_s`` (the epoch's losses and time so far),
``layout`` (samples, batch size, ranks: a mid-epoch resume needs the same), ``best_score``, ``rng`` (torch
CPU, numpy, python, and the CUDA device's generator states) and ``config``. ``metrics`` holds the epoch's
validation metrics, or the partial epoch's train loss mid-epoch.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from perception.config import resolve
from perception.data.augment import build_augment
from perception.data.registry import build_dataset, parse_data_spec
from perception.data.sample import DET_CLASSES, SEG_CLASSES
from perception.errors import ConfigError, InputError, ModelError, PerceptionError
from perception.nets import build_net
from perception.nets.box_coding import box_encoding_of
from perception.nets.checkpoints import save_model_checkpoint
from perception.nets.contract_graph import InputAdapter
from perception.progress import Progress
from perception.runtime.contract import ModelContract
from perception.train.config import TrainConfig
from perception.train.data import EpochSampler, TrainSet, collate
from perception.train.losses import DetectionLoss, MultiTaskLoss, Targets

log = logging.getLogger(__name__)


class TrainingError(PerceptionError):
    """Training cannot go on (non-finite loss, bad checkpoint); the message names the step and checkpoint."""


# --- distributed -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, info_local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        name = f"cuda:{info_local_rank}"
    return torch.device(name)


# --- model pieces -------------------------------------------------------------------------------------
class TrainModel(nn.Module):
    """uint8 BGR NHWC batch → ``MultiTaskOutput``: the export's input adapter in front of the network, so
    training sees exactly what the exported graph computes."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.adapter = InputAdapter("BGR")
        self.net = net

    def forward(self, images: torch.Tensor):
        return self.net(self.adapter(images))


class ModelEMA:
    """Exponential moving average of weights (and a copy of buffers), with a warm-up on the decay."""

    def __init__(self, net: nn.Module, decay: float, tau: float, updates: int = 0):
        self.ema = copy.deepcopy(net).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        src = net.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on norms and biases (1-D parameters): decaying them only hurts."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Step → lr factor: linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def set_encoder_frozen(net: nn.Module, frozen: bool) -> None:
    """Freeze (no grads, BatchNorm statistics fixed) or unfreeze the shared encoder, when the net has one."""
    enc = getattr(net, "encoder", None)
    if enc is None:
        return
    for p in enc.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        enc.eval()


def contract_for(
    cfg: TrainConfig, trained_on: list[str], box_encoding: str = "ltrb_softplus", init_from: list[str] | None = None
) -> ModelContract:
    """The contract of the run's checkpoints; ``init_from`` names the pretrained weights it started from."""
    net_strides = (8, 16, 32)
    return ModelContract(
        input_size=tuple(cfg.input_size),
        seg_classes=SEG_CLASSES,
        det_classes=DET_CLASSES,
        format="raw",
        strides=net_strides,
        box_encoding=box_encoding,
        name=cfg.name,
        score_threshold=0.25,
        iou_threshold=0.5,
        trained_on=tuple(trained_on),
        created=dt.date.today().isoformat(),
        extra={"init_from": list(init_from)} if init_from else {},
    )


def arch_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    m = cfg.model
    kw: dict[str, Any] = {"num_seg_classes": len(SEG_CLASSES), "num_det_classes": len(DET_CLASSES)}
    if m.arch == "multitask":
        kw.update(encoder=m.encoder, seg_width=m.seg_width, seg_out_stride=m.seg_out_stride, det_width=m.det_width)
    elif m.arch == "separate":
        kw.update(encoder=m.encoder, det_width=m.det_width)
        if m.seg_decoder_channels:
            kw["seg_decoder_channels"] = tuple(int(c) for c in m.seg_decoder_channels)
    elif m.arch == "tiny":
        kw.update(width=m.seg_width)
    elif m.arch == "yolox_nano":
        kw.update(seg_width=m.seg_width, seg_out_stride=m.seg_out_stride)
    return kw


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict, or ModelError naming the file."""
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # zip, pickle and torch errors all mean "not a checkpoint" to the user
        raise ModelError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise ModelError(f"{path}: not a perception checkpoint (needs 'arch' and 'state_dict')")
    return ckpt


def load_weights(net: nn.Module, ckpt: dict[str, Any], arch: str, kwargs: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's weights, refusing one of another architecture with what differs."""
    if ckpt["arch"] != arch or ckpt.get("arch_kwargs") != kwargs:
        raise ModelError(
            f"{path}: checkpoint is from another architecture: it has {ckpt['arch']} {ckpt.get('arch_kwargs')}, "
            f"this config builds {arch} {kwargs}"
        )
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ModelError(f"{path}: checkpoint weights do not fit the network: {str(err).splitlines()[0]}") from err


def initialise_from_config(net: nn.Module, cfg: TrainConfig, config_file: str | None):
    """Load ``cfg.init``'s pretrained weights into ``net``; returns the ``InitReport``."""
    from perception.nets.contract_graph import IMAGENET_MEAN, IMAGENET_STD
    from perception.train.init_sources import initialise

    init = cfg.init
    path = resolve(init.path, config_file) if init.path else None
    try:
        return initialise(
            net,
            cfg.model.arch,
            init.kind,
            path,
            DET_CLASSES,
            class_rows=init.class_rows,
            input_norm=(IMAGENET_MEAN, IMAGENET_STD),  # what TrainModel's InputAdapter feeds the network
        )
    except ValueError as err:
        raise ConfigError(f"{config_file}: 'init.kind': {err}") from err


# --- data ----------------------------------------------------------------------------------------------
def build_train_set(cfg: TrainConfig, config_file: str | None) -> TrainSet:
    datasets, repeats = [], []
    for i, src in enumerate(cfg.data.train):
        kind, root = parse_data_spec(src.spec)
        root = resolve(root, config_file)
        kwargs = {"lane_autolabel": True} if src.lane_autolabel else {}
        if src.lane_autolabel and kind != "camvid":
            raise ConfigError(f"{config_file}: 'data.train[{i}].lane_autolabel' is for camvid only, not {kind}")
        ds = build_dataset(kind, root, split=src.split, bad_boxes="drop", **kwargs)
        if len(ds) == 0:
            raise InputError(f"{root}: {kind} split {src.split!r} has no samples (data.train[{i}])")
        if tuple(ds.seg_classes) != SEG_CLASSES or tuple(ds.det_classes) != DET_CLASSES:
            raise ConfigError(f"{root}: classes {ds.seg_classes} / {ds.det_classes} differ from the model's")
        datasets.append(ds)
        repeats.append(src.repeat)
    aug = build_augment("train", tuple(cfg.input_size), **_augment_kwargs(cfg))
    return TrainSet(datasets, repeats, aug, seed=cfg.seed)


def _augment_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, tuple) else v for k, v in asdict(cfg.augment).items()}


def build_val_set(cfg: TrainConfig, config_file: str | None):
    if cfg.data.val is None:
        return None
    kind, root = parse_data_spec(cfg.data.val.spec)
    root = resolve(root, config_file)
    ds = build_dataset(kind, root, split=cfg.data.val.split)
    if len(ds) == 0:
        raise InputError(f"{root}: {kind} split {cfg.data.val.split!r} has no samples (data.val)")
    return ds


# --- validation ----------------------------------------------------------------------------------------
VAL_KEYS = ("seg.iou.drivable", "seg.iou.lane", "seg.miou", "det.map50", "det.map")


def validate(net: nn.Module, contract: ModelContract, dataset, device: torch.device, max_frames: int | None) -> dict:
    """Score ``net`` (left in eval mode) through the runtime pipeline, on every frame of ``dataset``."""
    from perception.eval.evaluate import evaluate
    from perception.eval.predictors import PipelinePredictor
    from perception.pipeline import Pipeline
    from perception.postprocess.network_outputs import DetectionSettings
    from perception.preprocess import Preprocessor
    from perception.runtime.torch_backend import TorchBackend

    backend = TorchBackend.from_net(net, contract, device=str(device))
    pre = Preprocessor(input_size=contract.input_size, color=contract.color, pad_value=contract.pad_value)
    # mAP needs the low-score tail: 0.001 as in COCO evaluation
    settings = DetectionSettings.from_contract(backend.contract, 0.001, None, None, False)
    predictor = PipelinePredictor(pipeline=Pipeline(backend, pre, settings))
    metrics = evaluate(predictor, dataset, max_frames=max_frames).metrics
    fit_parts = [metrics[k] for k in ("seg.iou.drivable", "seg.iou.lane", "det.map50") if k in metrics]
    fit_parts = [v for v in fit_parts if not math.isnan(v)]
    metrics["fitness"] = float(np.mean(fit_parts)) if fit_parts else 0.0
    return metrics


# --- logging -------------------------------------------------------------------------------------------
STEP_FIELDS = [
    "epoch",
    "step",
    "lr",
    "loss",
    "seg",
    "det",
    "seg_ce",
    "seg_dice",
    "det_box",
    "det_cls",
    "num_fg",
    "sec_per_step",
]
EPOCH_FIELDS = ["epoch", "step", "train_loss", "wall_s", "fitness", *VAL_KEYS]


class CsvLog:
    """Append rows to a CSV, writing the header once; the file is flushed after every row."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        new = not path.exists()
        self.f = path.open("a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields, extrasaction="ignore")
        if new:
            self.w.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: row.get(k, "") for k in self.fields})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def truncate_csv(path: Path, fields: list[str], key: str, last: int) -> None:
    """Keep only the complete rows of ``path`` whose integer column ``key`` is <= ``last`` (atomically,
    header ``fields``): the rows a killed run logged after its last checkpoint are replayed on resume."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = []
    for row in rows:
        if None in row or None in row.values():  # a line cut short by the kill, or a foreign one
            continue
        try:
            if int(row[key]) <= last:
                keep.append(row)
        except (KeyError, ValueError):
            continue
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: row.get(k, "") for k in fields} for row in keep)
    os.replace(tmp, path)


def _tensorboard(out: Path, enabled: bool, purge_step: int):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: CSV logs only (pip install tensorboard)")
        return None
    # events a killed run wrote after its checkpoint (global step >= purge_step) are dropped on resume
    return SummaryWriter(str(out / "tb"), purge_step=purge_step)


# --- resume state ----------------------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict[str, Any]:
    """The random generators a step may draw from: torch CPU, numpy and python (and the CUDA device's)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def budget_spent(t_start: float, budget_min: float | None, info: DistInfo, device: torch.device) -> bool:
    """Whether this process has run ``budget_min`` minutes since ``t_start`` (perf_counter); under DDP
    rank 0's clock decides for every rank (a collective: all ranks call it at the same step)."""
    if budget_min is None:
        return False
    spent = time.perf_counter() - t_start >= budget_min * 60
    if info.world > 1:
        flag = torch.tensor([int(spent)], device=device)
        dist.broadcast(flag, src=0)
        spent = bool(flag.item())
    return spent


# --- the loop ------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Where a run went. ``net`` / ``ema``: the trained modules (every rank); ``rank_indices``: the
    dataset indices this rank's sampler drew in the first epoch run under DDP (how the data was split);
    ``epochs_run``: epochs this call finished; ``complete``: False when the wall budget stopped the run
    before its last epoch (``last.pt`` holds where: continue with ``resume=True``)."""

    out: Path
    last: Path
    best: Path | None
    epochs_run: int
    steps: int
    wall_s: float
    metrics: dict[str, float]
    net: nn.Module | None = None
    ema: nn.Module | None = None
    rank_indices: list[int] | None = None
    complete: bool = True


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank: DDP syncs them at each forward, but the
    last forward of an epoch updates them from the local batch, so ranks drift apart by one batch."""
    for b in module.buffers():
        dist.broadcast(b, src=0)


def train(cfg: TrainConfig, config_file: str | None = None, resume: bool = False) -> TrainResult:
    """Run the training ``cfg`` describes. See the module docstring; returns where everything went."""
    t_start, t_clock = time.time(), time.perf_counter()
    if cfg.checkpoint_every_min < 0:
        raise ConfigError(f"{config_file}: 'checkpoint_every_min' must be >= 0, got {cfg.checkpoint_every_min}")
    if cfg.wall_budget_min is not None and cfg.wall_budget_min < 0:
        raise ConfigError(f"{config_file}: 'wall_budget_min' must be >= 0, got {cfg.wall_budget_min}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    info = setup_distributed(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(resolve(cfg.out, config_file)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if not resume and last_path.exists() and info.main:
        raise ConfigError(f"{last_path} exists: pass --resume to continue that run, or choose another 'out'")

    train_set = build_train_set(cfg, config_file)
    val_set = build_val_set(cfg, config_file) if info.main else None
    trained_on = [f"{s.spec} ({s.split})" for s in cfg.data.train]
    kwargs = arch_kwargs(cfg)
    net = build_net(cfg.model.arch, **kwargs)
    init_from = []
    if cfg.init is not None:  # on resume too: it names the contract's init_from; last.pt overwrites the weights
        report = initialise_from_config(net, cfg, config_file)
        init_from.append(report.describe())
        log.info("initialised from %s", report.describe())
    if cfg.init_from and not resume:
        src = Path(resolve(cfg.init_from, config_file))
        load_weights(net, load_checkpoint(src), cfg.model.arch, kwargs, src)
        log.info("initialised from %s", src)
    if cfg.init_from:
        init_from.append(f"checkpoint: {cfg.init_from}")
    contract = contract_for(cfg, trained_on, box_encoding_of(net), init_from)
    model = TrainModel(net).to(device)

    # the epoch's order is a function of (seed, epoch): a resumed run skips the batches done without loading them
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=info.rank, world=info.world)
    loader_gen = torch.Generator()  # worker seeds, reseeded per epoch: loading never draws from the global RNG
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.data.workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=cfg.data.workers > 0,
        pin_memory=device.type == "cuda",
        generator=loader_gen,
    )
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise InputError(f"training set has {len(train_set)} samples: fewer than one batch of {cfg.batch_size}")
    total_steps = steps_per_epoch * cfg.epochs
    layout = {"samples": len(train_set), "batch_size": cfg.batch_size, "world": info.world}

    o = cfg.optim
    if o.name == "adamw":
        optimizer = torch.optim.AdamW(param_groups(net, o.weight_decay), lr=o.lr, betas=(o.momentum, 0.999))
    elif o.name == "sgd":
        optimizer = torch.optim.SGD(param_groups(net, o.weight_decay), lr=o.lr, momentum=o.momentum, nesterov=True)
    else:
        raise ConfigError(f"{config_file}: 'optim.name' must be adamw or sgd, got {o.name!r}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(o.warmup_steps, total_steps, o.min_lr_ratio))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEMA(net, cfg.ema_decay, cfg.ema_tau)
    lc = cfg.loss
    criterion = MultiTaskLoss(
        DetectionLoss(
            net.strides,
            box_loss=lc.box_loss,
            cls_loss=lc.cls_loss,
            box_weight=lc.box_weight,
            cls_weight=lc.cls_weight,
            topk=lc.topk,
            box_encoding=box_encoding_of(net),
        ),
        seg_weight=lc.seg_weight,
        det_weight=lc.det_weight,
        seg_class_weights=lc.seg_class_weights,
        dice_weight=lc.dice_weight,
        seg_hard_frac=lc.seg_hard_frac,
    )

    # where to start: epoch, batch within it, what the epoch has logged so far, the generators' states
    start_epoch, start_batch, step, best_score = 0, 0, 0, -math.inf
    resumed_losses: list[float] = []
    resumed_wall = 0.0
    rng: dict[str, Any] | None = None
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if ckpt["arch"] != cfg.model.arch or ckpt.get("arch_kwargs") != kwargs or "train_state" not in ckpt:
            raise ModelError(f"{last_path}: cannot resume: checkpoint is from another architecture or not a run")
        ts = ckpt["train_state"]
        mid_epoch = bool(ts.get("mid_epoch", False))
        if mid_epoch and ts.get("layout") != layout:
            raise ModelError(
                f"{last_path}: cannot resume mid-epoch with other data, batch size or ranks: the checkpoint has "
                f"{ts.get('layout')}, this run {layout}"
            )
        net.load_state_dict(ts["model"])
        ema.ema.load_state_dict(ckpt["state_dict"])
        ema.updates = ts["ema_updates"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        step, best_score, rng = ts["step"], ts.get("best_score", -math.inf), ts.get("rng")
        if mid_epoch:
            start_epoch, start_batch = ts["epoch"], ts["epoch_step"]
            resumed_losses, resumed_wall = list(ts["epoch_losses"]), float(ts["epoch_wall_s"])
        else:
            start_epoch = ts["epoch"] + 1
        if info.main:
            log.info("resumed %s at epoch %d, batch %d, step %d", last_path, start_epoch + 1, start_batch, step)
    elif resume and info.main:
        log.info("--resume: no %s yet, starting fresh", last_path)

    ddp_model: nn.Module = model
    if info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # a frozen encoder gets no gradients: DDP must not wait for them
            find_unused_parameters=cfg.freeze_encoder_epochs > 0,
        )

    step_log = epoch_log = tb = None
    if info.main:
        # the logs continue from the resume point: rows of steps after it (or of a run that never saved) go
        truncate_csv(out / "steps.csv", STEP_FIELDS, "step", step)
        truncate_csv(out / "epochs.csv", EPOCH_FIELDS, "epoch", start_epoch)
        step_log = CsvLog(out / "steps.csv", STEP_FIELDS)
        epoch_log = CsvLog(out / "epochs.csv", EPOCH_FIELDS)
        tb = _tensorboard(out, cfg.tensorboard, purge_step=step + 1)
        log.info(
            "training %s on %s: %d samples, %d steps/epoch x %d epochs, batch %d x %d ranks",
            cfg.name,
            device,
            len(train_set),
            steps_per_epoch,
            cfg.epochs,
            cfg.batch_size,
            info.world,
        )

    def save_last(epoch: int, batches: int, losses: list[float], wall_s: float, metrics: dict[str, float]) -> None:
        """``last.pt``: after ``batches`` steps of ``epoch`` (0-based); mid-epoch when short of the epoch."""
        mid = batches < steps_per_epoch
        train_state = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "ema_updates": ema.updates,
            "epoch": epoch,
            "step": step,
            "mid_epoch": mid,
            "epoch_step": batches,
            "epoch_losses": list(losses) if mid else [],
            "epoch_wall_s": wall_s,
            "layout": layout,
            "best_score": best_score,
            "rng": rng_state(device),
            "config": asdict(cfg),
        }
        save_model_checkpoint(
            last_path, ema.ema, contract, cfg.model.arch, kwargs, train_state=train_state, metrics=metrics
        )

    if rng is not None:
        set_rng_state(rng, device)
    last_good: Path | None = last_path if last_path.exists() else None
    metrics: dict[str, float] = {}
    rank_indices: list[int] | None = None
    epochs_run, complete = 0, True
    t_saved, every_s = time.perf_counter(), cfg.checkpoint_every_min * 60
    for epoch in range(start_epoch, cfg.epochs):
        first = start_batch if epoch == start_epoch else 0
        losses: list[float] = resumed_losses if epoch == start_epoch else []
        wall_before = resumed_wall if epoch == start_epoch else 0.0
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch, start=first * cfg.batch_size)
        loader_gen.manual_seed(cfg.seed + epoch)
        if rank_indices is None and info.world > 1:
            rank_indices = sampler.order()
        model.train()
        frozen = epoch < cfg.freeze_encoder_epochs
        set_encoder_frozen(net, frozen)
        bar = Progress(steps_per_epoch - first, enabled=info.main, unit=f"steps (epoch {epoch + 1}/{cfg.epochs})")
        t_epoch = time.perf_counter()
        for i, (images, targets) in enumerate(loader, start=first):
            if i >= steps_per_epoch:
                break
            t0 = time.perf_counter()
            images = images.to(device, non_blocking=True)
            targets: Targets = targets.to(device)
            with torch.autocast(device.type, enabled=use_amp):
                out_ = ddp_model(images)
            loss, parts = criterion(out_, targets)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss is {float(loss.detach())} at epoch {epoch + 1}, step {step} ({parts}); stopped. "
                    f"Last good checkpoint: {last_good or 'none yet'}"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if o.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            ema.update(net)
            step += 1
            losses.append(parts["loss"])
            if info.main:
                if step % cfg.log_every == 0 or i == 0:
                    row = {
                        "epoch": epoch + 1,
                        "step": step,
                        "lr": optimizer.param_groups[0]["lr"],
                        "sec_per_step": time.perf_counter() - t0,
                        **parts,
                    }
                    step_log.write(row)
                    if tb is not None:
                        for k, v in parts.items():
                            tb.add_scalar(f"train/{k}", v, step)
                        tb.add_scalar("train/lr", row["lr"], step)
                bar.update(i + 1 - first, f"loss {np.mean(losses[-20:]):.3f}")
            if i + 1 < steps_per_epoch:  # the epoch's last step is saved by the epoch end right after it
                stop = budget_spent(t_clock, cfg.wall_budget_min, info, device)
                if info.main and (stop or time.perf_counter() - t_saved >= every_s):
                    partial = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses))}
                    save_last(epoch, i + 1, losses, wall_before + time.perf_counter() - t_epoch, partial)
                    last_good, t_saved = last_path, time.perf_counter()
                if stop:
                    complete = False
                    break
        bar.finish()
        if not complete:
            break
        if info.world > 1:
            sync_buffers(net)
            sync_buffers(ema.ema)
        if info.main:
            metrics = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": float(np.mean(losses)),
                "wall_s": wall_before + time.perf_counter() - t_epoch,
            }
            if val_set is not None:
                metrics.update(validate(ema.ema, contract, val_set, device, cfg.data.val.max_frames))
            score = metrics.get(cfg.val_metric, -metrics["train_loss"])
            epoch_log.write(metrics)
            if tb is not None:
                for k in ("fitness", *VAL_KEYS):
                    if k in metrics:
                        tb.add_scalar(f"val/{k}", metrics[k], epoch + 1)
            log.info(
                "epoch %d/%d: %s",
                epoch + 1,
                cfg.epochs,
                ", ".join(f"{k} {metrics[k]:.4f}" for k in ("train_loss", "fitness", *VAL_KEYS) if k in metrics),
            )
            # best.pt first: a kill between the two replays the epoch and writes the same best.pt again
            if score > best_score:
                best_score = score
                save_model_checkpoint(best_path, ema.ema, contract, cfg.model.arch, kwargs, metrics=metrics)
            save_last(epoch, steps_per_epoch, losses, metrics["wall_s"], metrics)
            last_good, t_saved = last_path, time.perf_counter()
        epochs_run += 1
        if info.world > 1:
            dist.barrier()
        if epoch + 1 < cfg.epochs and budget_spent(t_clock, cfg.wall_budget_min, info, device):
            complete = False
            break
    if info.main:
        for lg in (step_log, epoch_log):
            lg.close()
        if tb is not None:
            tb.close()
        if not complete:
            log.info(
                "wall budget of %.1f min spent: stopped at step %d, %s saved; continue with --resume",
                cfg.wall_budget_min,
                step,
                last_path,
            )
    if info.world > 1:
        dist.barrier()
    return TrainResult(
        out,
        last_path,
        best_path if best_path.exists() else None,
        epochs_run,
        step,
        time.time() - t_start,
        metrics,
        net,
        ema.ema,
        rank_indices,
        complete,
    )
