"""The training engine end to end on a tiny synthetic set: CLI, checkpoints, resume, bad input, DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.cli import main
from perception.config import load_config
from perception.data.synth.generate import SynthOptions, write_synth_dataset
from perception.errors import ConfigError
from perception.train.config import TrainConfig
from perception.train.engine import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_tiny")
    write_synth_dataset(out, n=12, seed=3, val_fraction=0.25, opts=SynthOptions(size=(192, 108)), workers=1)
    return out


def write_config(tmp: Path, data_dir: Path, **extra) -> Path:
    body = {
        "name": "t",
        "out": str(tmp / "run"),
        "input_size": [64, 96],
        "model": {"arch": "tiny", "seg_width": 8},
        "data": {
            "train": [{"spec": f"synthetic:{data_dir}", "split": "train"}],
            "val": {"spec": f"synthetic:{data_dir}", "split": "val"},
            "workers": 0,
        },
        "epochs": 2,
        "batch_size": 4,
        "max_steps_per_epoch": 2,
        "tensorboard": False,
        "threads": 1,
    }
    body.update(extra)
    import yaml

    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_train_writes_checkpoints_logs_and_resumes(tmp_path, tiny_data, capsys):
    cfg_path = write_config(tmp_path, tiny_data)
    assert main(["train", str(cfg_path), "-q"]) == 0
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "epochs.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert 0.0 <= float(rows[-1]["seg.miou"]) <= 1.0
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["train_state"]["step"] == 4
    assert (run / "best.pt").exists() and (run / "steps.csv").exists()
    # a second run into the same folder without --resume refuses (nothing overwritten)
    assert main(["train", str(cfg_path), "-q"]) == 1
    assert "--resume" in capsys.readouterr().err
    # resume to 3 epochs continues at epoch 3, step 4
    assert main(["train", str(cfg_path), "-q", "--resume", "--epochs", "3"]) == 0
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["train_state"]["epoch"] == 2 and ckpt["train_state"]["step"] == 6
    rows = list(csv.DictReader((run / "epochs.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_resume_equals_uninterrupted(tmp_path, tiny_data):
    """Two epochs in one go and one + resume one end with the same weights (deterministic CPU run)."""
    (tmp_path / "a").mkdir()
    full = train(load_config(write_config(tmp_path / "a", tiny_data, epochs=2), TrainConfig))
    (tmp_path / "b").mkdir()
    b_path = write_config(tmp_path / "b", tiny_data, epochs=1)
    train(load_config(b_path, TrainConfig))
    import dataclasses

    resumed = train(dataclasses.replace(load_config(b_path, TrainConfig), epochs=2), resume=True)
    for (k, va), vb in zip(full.ema.state_dict().items(), resumed.ema.state_dict().values(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-6), k


def test_unknown_key_names_file_and_key(tmp_path, tiny_data, capsys):
    cfg_path = write_config(tmp_path, tiny_data, optim={"lr": 0.01, "warmpu_steps": 3})
    assert main(["train", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert str(cfg_path) in err and "optim.warmpu_steps" in err


def test_empty_dataset_path_is_an_error(tmp_path, tiny_data, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg_path = write_config(tmp_path, tiny_data)
    text = cfg_path.read_text().replace(f"synthetic:{tiny_data}", f"synthetic:{empty}", 1)
    cfg_path.write_text(text)
    assert main(["train", str(cfg_path)]) == 1
    assert str(empty) in capsys.readouterr().err


def test_checkpoint_from_another_architecture_is_refused(tmp_path, tiny_data, capsys):
    (tmp_path / "a").mkdir()
    first = train(load_config(write_config(tmp_path / "a", tiny_data, epochs=1), TrainConfig))
    (tmp_path / "b").mkdir()
    cfg_path = write_config(
        tmp_path / "b", tiny_data, init_from=str(first.last), model={"arch": "tiny", "seg_width": 16}
    )
    assert main(["train", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "another architecture" in err and str(first.last) in err


def test_nan_loss_stops_naming_step_and_checkpoint(tmp_path, tiny_data, monkeypatch):
    from perception.train import losses

    cfg = load_config(write_config(tmp_path, tiny_data, epochs=2), TrainConfig)
    calls = {"n": 0}
    real = losses.MultiTaskLoss.__call__

    def poisoned(self, out, t):
        calls["n"] += 1
        loss, parts = real(self, out, t)
        return (loss * float("nan"), parts) if calls["n"] == 3 else (loss, parts)

    monkeypatch.setattr(losses.MultiTaskLoss, "__call__", poisoned)
    with pytest.raises(TrainingError, match=r"epoch 2, step 2.*last\.pt"):
        train(cfg)
    # the good checkpoint of epoch 1 is intact
    ckpt = torch.load(Path(cfg.out) / "last.pt", weights_only=False)
    assert ckpt["train_state"]["epoch"] == 0


def test_freeze_encoder_keeps_encoder_weights(tmp_path, tiny_data):
    """freeze_encoder_epochs: the tiny net has no ``encoder`` attribute, so use the smp-based one."""
    cfg_path = write_config(
        tmp_path,
        tiny_data,
        epochs=1,
        input_size=[64, 96],
        model={"arch": "multitask", "encoder": "tu-mobilenetv4_conv_small", "seg_width": 8, "det_width": 16},
        freeze_encoder_epochs=1,
        data={"train": [{"spec": f"synthetic:{tiny_data}", "split": "train"}], "workers": 0},
    )
    cfg = load_config(cfg_path, TrainConfig)
    from perception.nets import build_net
    from perception.train.engine import arch_kwargs

    torch.manual_seed(cfg.seed)
    before = build_net("multitask", **arch_kwargs(cfg)).encoder.state_dict()
    result = train(cfg)
    after = result.net.encoder.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    head_before = build_net("multitask", **arch_kwargs(cfg))  # differs from the trained head
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            head_before.det_head.state_dict().values(), result.net.det_head.state_dict().values(), strict=True
        )
    )


DDP_WORKER = textwrap.dedent(
    """
    import os, sys, torch
    from perception.config import load_config
    from perception.train.config import TrainConfig
    from perception.train.engine import train
    result = train(load_config(sys.argv[1], TrainConfig), sys.argv[1])
    rank = int(os.environ["RANK"])
    torch.save({"net": result.net.state_dict(), "ema": result.ema.state_dict(), "indices": result.rank_indices},
               os.path.join(sys.argv[2], f"rank{rank}.pt"))
    """
)


def test_ddp_two_cpu_ranks_gloo(tmp_path, tiny_data):
    """torchrun with 2 CPU ranks (gloo): identical weights at the end, and the sampler splits the data."""
    cfg_path = write_config(tmp_path, tiny_data, epochs=1, max_steps_per_epoch=None, batch_size=2)
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        str(worker),
        str(cfg_path),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for part in ("net", "ema"):
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), f"{part}.{k} differs between ranks"
    i0, i1 = set(r0["indices"]), set(r1["indices"])
    assert i0 and i1 and not (i0 & i1), "ranks must see disjoint samples"
    assert len(i0 | i1) == 2 * (9 // 2)  # 9 train frames, drop_last: 4 per rank
    assert (Path(tmp_path / "run") / "last.pt").exists()
    assert np.isfinite(float(torch.load(tmp_path / "run" / "last.pt", weights_only=False)["metrics"]["train_loss"]))


def test_config_errors_are_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nout: y\n")
    with pytest.raises(ConfigError, match="missing key 'data'"):
        load_config(path, TrainConfig)


def test_export_bad_checkpoints_are_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert main(["export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 1
    assert f"{missing}: checkpoint not found" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["export", str(junk), "--out", str(tmp_path / "m.onnx")]) == 1
    assert f"{junk}: not a PyTorch checkpoint" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"weights": {}}, other)
    assert main(["export", str(other), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "not a perception checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_separate_arch_takes_its_unet_decoder_widths_from_the_config():
    """configs/train/compare_separate_light.yaml: the separate pair with a light smp U-Net decoder."""
    from perception.nets import build_net
    from perception.train.engine import arch_kwargs

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/train/compare_separate_light.yaml", TrainConfig)
    kwargs = arch_kwargs(cfg)
    assert kwargs["seg_decoder_channels"] == (32, 24, 16, 8, 8)
    net = build_net(cfg.model.arch, **kwargs)
    widths = [block.conv2[0].out_channels for block in net.segmenter.decoder.blocks]
    assert widths == [32, 24, 16, 8, 8]
    default = load_config(repo / "configs/train/compare_separate.yaml", TrainConfig)
    assert "seg_decoder_channels" not in arch_kwargs(default)  # smp's own default widths
