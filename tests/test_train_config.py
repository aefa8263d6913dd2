"""Training config loading: Literal choices and value ranges checked at load, errors with the dotted key,
the choices equal to what the consuming code implements, and every shipped training config loads."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from perception.config import load_config
from perception.errors import ConfigError
from perception.train.config import (
    Arch,
    BoxLoss,
    ClsLoss,
    DataKind,
    InitKind,
    ModelConfig,
    OptimName,
    TrainConfig,
    ValMetric,
)

REPO = Path(__file__).resolve().parents[1]

BASE = {"name": "t", "out": "run", "data": {"train": [{"spec": "synthetic:data"}]}}


def load(tmp_path: Path, **changes) -> TrainConfig:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return load_config(path, TrainConfig)


def error(tmp_path: Path, **changes) -> str:
    """The one-line ConfigError message loading ``BASE`` with ``changes`` gives; it names the file."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **changes)
    msg = str(info.value)
    assert str(tmp_path / "train.yaml") in msg and "\n" not in msg
    return msg


def test_minimal_config_takes_the_defaults(tmp_path):
    cfg = load(tmp_path)
    assert cfg.model == ModelConfig() and cfg.val_metric == "fitness" and cfg.device == "auto"


@pytest.mark.parametrize(
    "changes, key, bad, valid",
    [
        ({"model": {"arch": "unet"}}, "model.arch", "'unet'", typing.get_args(Arch)),
        ({"model": {"seg_out_stride": 3}}, "model.seg_out_stride", "3", (2, 4, 8)),
        ({"loss": {"box_loss": "diou"}}, "loss.box_loss", "'diou'", typing.get_args(BoxLoss)),
        ({"loss": {"cls_loss": "focal"}}, "loss.cls_loss", "'focal'", typing.get_args(ClsLoss)),
        ({"optim": {"name": "adam"}}, "optim.name", "'adam'", typing.get_args(OptimName)),
        ({"init": {"kind": "yolox"}}, "init.kind", "'yolox'", typing.get_args(InitKind)),
        ({"val_metric": "seg.miou_fg"}, "val_metric", "'seg.miou_fg'", typing.get_args(ValMetric)),
    ],
)
def test_literal_value_outside_the_choices(tmp_path, changes, key, bad, valid):
    msg = error(tmp_path, **changes)
    assert f"'{key}' must be one of" in msg and f"got {bad}" in msg
    for v in valid:
        assert repr(v) in msg


@pytest.mark.parametrize("typo", ["fitnes", "map50", "det.mAP50", "seg.iou.road", "train_loss", ""])
def test_val_metric_typo_is_refused(tmp_path, typo):
    """A metric no epoch computes would leave best.pt picked by training loss without a word."""
    msg = error(tmp_path, val_metric=typo)
    assert "'val_metric'" in msg and "'fitness'" in msg and "'det.map50'" in msg


@pytest.mark.parametrize("metric", typing.get_args(ValMetric))
def test_every_val_metric_loads(tmp_path, metric):
    assert load(tmp_path, val_metric=metric).val_metric == metric


@pytest.mark.parametrize(
    "changes, key, bad, valid",
    [
        ({"data": {"train": [{"spec": "camvd:../data"}]}}, "data.train[0].spec", "'camvd:../data'", "camvid"),
        ({"data": {"train": [{"spec": "../data/camvid"}]}}, "data.train[0].spec", "'../data/camvid'", "KIND:PATH"),
        ({"data": {"train": [{"spec": "camvid:"}]}}, "data.train[0].spec", "'camvid:'", "KIND:PATH"),
        (
            {"data": {"train": [{"spec": "camvid:x"}], "val": {"spec": "tusimpel:x"}}},
            "data.val.spec",
            "'tusimpel:x'",
            "tusimple",
        ),
        ({"device": "gpu"}, "device", "'gpu'", "cuda:N"),
        ({"device": "cuda:x"}, "device", "'cuda:x'", "auto, cpu, cuda or cuda:N"),
    ],
)
def test_string_with_a_shape(tmp_path, changes, key, bad, valid):
    msg = error(tmp_path, **changes)
    assert f"'{key}' must be" in msg and f"got {bad}" in msg and valid in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices_load(tmp_path, device):
    assert load(tmp_path, device=device).device == device


@pytest.mark.parametrize(
    "changes, key, expected",
    [
        ({"epochs": 0}, "epochs", ">= 1"),
        ({"batch_size": 0}, "batch_size", ">= 1"),
        ({"max_steps_per_epoch": 0}, "max_steps_per_epoch", ">= 1"),
        ({"input_size": [0, 640]}, "input_size[0]", ">= 32"),
        ({"input_size": [288, 500]}, "input_size[1]", "a multiple of 32"),  # the networks' stride
        ({"optim": {"lr": 0}}, "optim.lr", "> 0"),
        ({"optim": {"lr": -0.001}}, "optim.lr", "> 0"),
        ({"optim": {"weight_decay": -0.1}}, "optim.weight_decay", ">= 0"),
        ({"optim": {"momentum": 1.0}}, "optim.momentum", "in [0, 1)"),
        ({"optim": {"min_lr_ratio": 1.5}}, "optim.min_lr_ratio", "in [0, 1]"),
        ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps", ">= 0"),
        ({"optim": {"grad_clip": -1}}, "optim.grad_clip", ">= 0"),
        ({"augment": {"hflip_p": 1.5}}, "augment.hflip_p", "in [0, 1]"),
        ({"augment": {"night_p": -0.1}}, "augment.night_p", "in [0, 1]"),
        ({"augment": {"scale": [0.0, 1.25]}}, "augment.scale[0]", "> 0"),
        ({"loss": {"topk": 0}}, "loss.topk", ">= 1"),
        ({"loss": {"box_weight": -1}}, "loss.box_weight", ">= 0"),
        ({"loss": {"seg_class_weights": [1, -1, 3]}}, "loss.seg_class_weights[1]", ">= 0"),
        ({"model": {"seg_width": 0}}, "model.seg_width", ">= 1"),
        ({"model": {"seg_decoder_channels": [32, 0]}}, "model.seg_decoder_channels[1]", ">= 1"),
        ({"ema_decay": 1.1}, "ema_decay", "in [0, 1]"),
        ({"ema_tau": 0}, "ema_tau", "> 0"),
        ({"checkpoint_every_min": -1}, "checkpoint_every_min", ">= 0"),
        ({"wall_budget_min": -5}, "wall_budget_min", ">= 0"),
        ({"log_every": 0}, "log_every", ">= 1"),
        ({"threads": -2}, "threads", ">= 0"),
        ({"seed": -1}, "seed", "in [0, 4294967295]"),
        ({"data": {"train": [{"spec": "camvid:x", "repeat": 0}]}}, "data.train[0].repeat", ">= 1"),
        ({"data": {"train": [{"spec": "camvid:x"}], "workers": -1}}, "data.workers", ">= 0"),
        (
            {"data": {"train": [{"spec": "camvid:x"}], "val": {"spec": "camvid:x", "max_frames": 0}}},
            "data.val.max_frames",
            ">= 1",
        ),
        ({"init": {"kind": "yolox_onnx", "class_rows": {"car": 80}}}, "init.class_rows.car", "in [0, 79]"),
    ],
)
def test_value_out_of_range(tmp_path, changes, key, expected):
    msg = error(tmp_path, **changes)
    assert f"'{key}' must be {expected}, got" in msg


def test_bounds_that_are_allowed(tmp_path):
    cfg = load(
        tmp_path,
        optim={"momentum": 0, "min_lr_ratio": 1, "warmup_steps": 0, "grad_clip": 0},
        augment={"hflip_p": 0, "jpeg_p": 1, "translate": [-0.5, 0.5], "rotate": [-30, 30]},
        checkpoint_every_min=0,
        wall_budget_min=0,
        max_steps_per_epoch=None,
        data={"train": [{"spec": "camvid:C:/data/camvid"}], "workers": 0},  # a path may hold a colon
    )
    assert cfg.optim.momentum == 0.0 and cfg.augment.jpeg_p == 1.0 and cfg.wall_budget_min == 0.0


def test_section_inside_an_optional_names_its_own_key(tmp_path):
    """``init`` may be null; a mistake inside it still names the inner key, not "InitConfig or null"."""
    msg = error(tmp_path, init={"kind": "yolox_onnx", "pth": "x.onnx"})
    assert "'init.pth'" in msg and "kind, path, class_rows" in msg
    assert load(tmp_path, init=None).init is None


def test_check_config_on_overrides(tmp_path):
    """``perception train --device/--epochs`` override with ``dataclasses.replace``; ``check_config`` checks."""
    import dataclasses

    from perception.config import check_config

    cfg = load(tmp_path)
    assert check_config(dataclasses.replace(cfg, device="cuda:0", epochs=3)).epochs == 3
    with pytest.raises(ConfigError, match="'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        check_config(dataclasses.replace(cfg, device="gpu"), "command line")
    with pytest.raises(ConfigError, match="'epochs' must be >= 1, got 0"):
        check_config(dataclasses.replace(cfg, epochs=0), "command line")


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_training_config_loads(path):
    assert isinstance(load_config(path, TrainConfig), TrainConfig)


# --------------------------------------------------------------------------------------------------------
# The choices are those of the code that consumes each field


def test_choices_match_the_consuming_code():
    pytest.importorskip("torch")
    from perception.data.registry import DATASET_KINDS
    from perception.nets import NETS
    from perception.train.engine import VAL_KEYS
    from perception.train.init_sources import INIT_KINDS
    from perception.train.losses import BOX_LOSSES, CLS_LOSSES

    assert set(typing.get_args(Arch)) == set(NETS)
    assert set(typing.get_args(BoxLoss)) == set(BOX_LOSSES)
    assert set(typing.get_args(ClsLoss)) == set(CLS_LOSSES)
    assert set(typing.get_args(InitKind)) == set(INIT_KINDS)
    assert set(typing.get_args(DataKind)) == set(DATASET_KINDS)
    assert set(typing.get_args(ValMetric)) == {"fitness", *VAL_KEYS}
