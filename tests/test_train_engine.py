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
    import dataclasses, os, sys, torch
    from perception.config import load_config
    from perception.train.config import TrainConfig
    from perception.train.engine import train
    cfg = load_config(sys.argv[1], TrainConfig)
    result = train(cfg, sys.argv[1])
    rank = int(os.environ["RANK"])
    torch.save({"net": result.net.state_dict(), "ema": result.ema.state_dict(), "indices": result.rank_indices},
               os.path.join(sys.argv[2], f"rank{rank}.pt"))
    # the same run stopped by the wall budget after its first step, then resumed mid-epoch on every rank
    cfg = dataclasses.replace(cfg, out=os.path.join(sys.argv[2], "run_resumed"), wall_budget_min=0.0)
    stopped = train(cfg, sys.argv[1])
    assert not stopped.complete and stopped.steps == 1, stopped
    result = train(dataclasses.replace(cfg, wall_budget_min=None), sys.argv[1], resume=True)
    assert result.complete and result.steps == 2, result
    torch.save({"net": result.net.state_dict(), "ema": result.ema.state_dict()},
               os.path.join(sys.argv[2], f"rank{rank}_resumed.pt"))
    """
)


def test_ddp_two_cpu_ranks_gloo(tmp_path, tiny_data):
    """torchrun with 2 CPU ranks (gloo): identical weights at the end, and the sampler splits the data; the
    same run stopped after its first step and resumed (each rank skipping its own batch) ends the same."""
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
    for r in (0, 1):
        resumed = torch.load(tmp_path / f"rank{r}_resumed.pt", weights_only=False)
        for part in ("net", "ema"):
            for k, v in r0[part].items():
                assert torch.equal(v, resumed[part][k]), f"rank {r} resumed: {part}.{k} differs"
    assert_same_run(tmp_path / "run", tmp_path / "run_resumed")


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


# --- training across sessions: mid-epoch checkpoints, kills, resume, the wall budget ---------------------
# 9 training frames, batch 2: 4 steps per epoch (the odd frame dropped), 12 steps in all, every step logged;
# bit for bit is a CPU promise (CUDA kernels may not be deterministic)
SESSION_CFG = {
    "device": "cpu",
    "epochs": 3,
    "batch_size": 2,
    "max_steps_per_epoch": None,
    "log_every": 1,
    "optim": {"warmup_steps": 2},
}


class Killed(BaseException):
    """A simulated kill: not an Exception, so nothing in the loop can catch it."""


def _rows(path: Path, drop: str) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != drop} for r in csv.DictReader(path.read_text().splitlines())]


def assert_same_run(ref: Path, run: Path) -> None:
    """Two finished run folders hold bit-identical training results: raw and EMA weights, optimizer,
    scheduler, EMA counter, generator states, best.pt, and the logged losses and metrics (not the times)."""
    a, b = (torch.load(r / "last.pt", weights_only=False) for r in (ref, run))
    ta, tb = a["train_state"], b["train_state"]
    assert (tb["epoch"], tb["step"], tb["mid_epoch"]) == (ta["epoch"], ta["step"], False)
    for name, da, db in (("ema", a["state_dict"], b["state_dict"]), ("model", ta["model"], tb["model"])):
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), f"{name}.{k}"
    assert ta["ema_updates"] == tb["ema_updates"] and ta["scheduler"] == tb["scheduler"]
    oa, ob = ta["optimizer"], tb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for p, state in oa["state"].items():
        for k, v in state.items():
            assert torch.equal(v, ob["state"][p][k]), f"optimizer state {p}.{k}"
    assert torch.equal(ta["rng"]["torch"], tb["rng"]["torch"]) and ta["best_score"] == tb["best_score"]
    best_a, best_b = (torch.load(r / "best.pt", weights_only=False)["state_dict"] for r in (ref, run))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert _rows(run / "steps.csv", "sec_per_step") == _rows(ref / "steps.csv", "sec_per_step")
    assert _rows(run / "epochs.csv", "wall_s") == _rows(ref / "epochs.csv", "wall_s")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data) -> Path:
    """The uninterrupted run (default checkpoint_every_min: no mid-epoch checkpoint) the others must equal."""
    tmp = tmp_path_factory.mktemp("reference")
    result = train(load_config(write_config(tmp, tiny_data, **SESSION_CFG), TrainConfig))
    assert result.complete and result.steps == 12 and result.epochs_run == 3
    assert len(list(csv.DictReader((tmp / "run" / "steps.csv").open()))) == 12
    return tmp / "run"


def test_epoch_sampler_orders_and_resume_offsets():
    """One rank: RandomSampler's order; several: DistributedSampler's split (drop_last); ``start`` skips."""
    from perception.train.data import EpochSampler

    for n, world in ((9, 1), (9, 2), (10, 3), (8, 2)):
        for epoch in (0, 3):
            ref = torch.utils.data.DistributedSampler(
                range(n), num_replicas=world, rank=0, shuffle=True, seed=5, drop_last=True
            )
            for rank in range(world):
                s = EpochSampler(n, seed=5, rank=rank, world=world)
                s.set_epoch(epoch)
                ref.rank = rank
                ref.set_epoch(epoch)
                assert s.order() == list(ref) and len(s) == len(ref) == n // world
                s.set_epoch(epoch, start=3)  # resumed after 3 samples: the rest of this rank's order only
                assert list(s) == [(epoch, i) for i in list(ref)[3:]] and len(s) == n // world - 3
        single = EpochSampler(n, seed=5)
        single.set_epoch(2)
        assert single.order() == list(
            torch.utils.data.RandomSampler(range(n), generator=torch.Generator().manual_seed(7))
        )
    with pytest.raises(ValueError, match="outside"):
        EpochSampler(9, world=2).set_epoch(0, start=5)


def test_train_set_augments_by_the_epoch_in_the_key(tiny_data):
    """DataLoader workers keep the dataset copy they started with: the epoch comes with the key."""
    from perception.data.augment import build_augment
    from perception.data.registry import build_dataset
    from perception.train.data import TrainSet

    ds = TrainSet([build_dataset("synthetic", tiny_data, split="train")], [1], build_augment("train", (64, 96)), 0)
    ds.set_epoch(1)
    assert np.array_equal(ds[(1, 2)].image, ds[2].image)
    assert not np.array_equal(ds[(0, 2)].image, ds[(1, 2)].image)


def _kill_before_saving(monkeypatch, step: int) -> None:
    """Raise Killed just before last.pt of ``step`` is written (its steps.csv row is already there)."""
    from perception.train import engine

    real = engine.save_model_checkpoint

    def save(path, *args, **kwargs):
        if Path(path).name == "last.pt" and kwargs["train_state"]["step"] == step:
            raise Killed(step)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(engine, "save_model_checkpoint", save)


def _kill_in_step(monkeypatch, step: int) -> None:
    """Raise Killed in the loss of ``step`` (1-based)."""
    from perception.train import losses

    real, calls = losses.MultiTaskLoss.__call__, {"n": 0}

    def call(self, out, t):
        calls["n"] += 1
        if calls["n"] == step:
            raise Killed(step)
        return real(self, out, t)

    monkeypatch.setattr(losses.MultiTaskLoss, "__call__", call)


@pytest.mark.parametrize(
    ("every_min", "kill", "at", "resume_at", "workers"),
    [
        (0.0, "save", 3, (0, 2, True), 0),  # mid-epoch 1: resumes at its batch 2, the row of step 3 dropped
        (0.0, "save", 6, (1, 5, True), 0),  # mid-epoch 2, across the epoch boundary
        (0.0, "save", 4, (0, 3, True), 0),  # at the epoch end, after best.pt and the epochs.csv row: epoch replayed
        (60.0, "step", 7, (0, 4, False), 0),  # no mid-epoch checkpoint: back to the end of epoch 1, 5-6 dropped
        # persistent DataLoader workers, started in another epoch by each run, against the in-process reference
        (0.0, "save", 10, (2, 9, True), 1),
    ],
)
def test_killed_run_resumes_bit_for_bit(
    tmp_path, tiny_data, reference_run, monkeypatch, every_min, kill, at, resume_at, workers
):
    data = {
        "train": [{"spec": f"synthetic:{tiny_data}"}],
        "val": {"spec": f"synthetic:{tiny_data}"},
        "workers": workers,
    }
    cfg_path = write_config(tmp_path, tiny_data, **SESSION_CFG, checkpoint_every_min=every_min, data=data)
    cfg = load_config(cfg_path, TrainConfig)
    run = Path(cfg.out)
    with monkeypatch.context() as m:
        (_kill_before_saving if kill == "save" else _kill_in_step)(m, at)
        with pytest.raises(Killed):
            train(cfg)
    ts = torch.load(run / "last.pt", weights_only=False)["train_state"]
    assert (ts["epoch"], ts["step"], ts["mid_epoch"]) == resume_at
    logged = [int(r["step"]) for r in csv.DictReader((run / "steps.csv").open())]
    assert logged[-1] > ts["step"]  # rows past the checkpoint, which the resume must drop
    result = train(cfg, resume=True)
    assert result.complete and result.steps == 12
    assert_same_run(reference_run, run)


def test_sigkilled_process_resumes_bit_for_bit(tmp_path, tiny_data, reference_run):
    """A real kill: ``perception train`` in a subprocess, checkpointing every step, SIGKILLed once last.pt
    holds step 2 or later; ``--resume`` then ends where the uninterrupted run ended."""
    import signal
    import time

    cfg_path = write_config(tmp_path, tiny_data, **SESSION_CFG, checkpoint_every_min=0)
    last = tmp_path / "run" / "last.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "perception", "train", str(cfg_path), "-q"], env=env, stderr=err)
        try:
            deadline, seen = time.monotonic() + 120, None
            while time.monotonic() < deadline and proc.poll() is None:
                stamp = last.stat().st_mtime_ns if last.exists() else None
                if stamp is not None and stamp != seen:
                    seen = stamp
                    if torch.load(last, weights_only=False)["train_state"]["step"] >= 2:
                        proc.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-2000:]
    killed_at = torch.load(last, weights_only=False)["train_state"]["step"]
    assert 2 <= killed_at < 12
    assert main(["train", str(cfg_path), "-q", "--resume"]) == 0
    assert_same_run(reference_run, tmp_path / "run")


def test_wall_budget_stops_with_a_resumable_checkpoint(tmp_path, tiny_data, reference_run, capsys):
    cfg_path = write_config(tmp_path, tiny_data, **SESSION_CFG)
    # a budget already spent: the run stops after its first step (it always makes progress), last.pt saved
    assert main(["train", str(cfg_path), "-q", "--budget-min", "0"]) == 0
    assert "stopped at the wall budget" in capsys.readouterr().out
    ts = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["train_state"]
    assert (ts["epoch"], ts["step"], ts["epoch_step"], ts["mid_epoch"]) == (0, 1, 1, True)
    # the next session: a budget that is not reached finishes the run
    assert main(["train", str(cfg_path), "-q", "--resume", "--budget-min", "10"]) == 0
    assert "wall budget" not in capsys.readouterr().out
    assert_same_run(reference_run, tmp_path / "run")


def test_mid_epoch_resume_refuses_another_batch_size(tmp_path, tiny_data):
    import dataclasses

    from perception.errors import ModelError

    cfg = load_config(write_config(tmp_path, tiny_data, **SESSION_CFG, wall_budget_min=0), TrainConfig)
    assert not train(cfg).complete
    with pytest.raises(ModelError, match="cannot resume mid-epoch"):
        train(dataclasses.replace(cfg, batch_size=3, wall_budget_min=None), resume=True)


def test_resume_restores_the_random_generators(tmp_path, tiny_data, monkeypatch):
    """A step that draws from torch, numpy and python generators (dropout, random augmentation on the
    device) still resumes bit for bit: the generator states travel in last.pt."""
    import random

    from perception.train import losses

    real = losses.MultiTaskLoss.__call__

    def noisy(self, out, t):
        loss, parts = real(self, out, t)
        return loss * (1 + 0.1 * float(torch.rand(())) + 0.1 * np.random.rand() + 0.1 * random.random()), parts

    monkeypatch.setattr(losses.MultiTaskLoss, "__call__", noisy)
    runs = {}
    for name in ("ref", "killed"):
        (tmp_path / name).mkdir()
        runs[name] = load_config(
            write_config(tmp_path / name, tiny_data, **SESSION_CFG, checkpoint_every_min=0), TrainConfig
        )
    train(runs["ref"])
    with monkeypatch.context() as m:
        _kill_before_saving(m, 6)
        with pytest.raises(Killed):
            train(runs["killed"])
    train(runs["killed"], resume=True)
    assert_same_run(Path(runs["ref"].out), Path(runs["killed"].out))


def test_wall_budget_spent_at_an_epoch_end_stops_before_the_next_epoch(tmp_path, tiny_data):
    """One step per epoch: the budget is checked after the epoch's checkpoint, so last.pt is an epoch end."""
    cfg = load_config(
        write_config(tmp_path, tiny_data, device="cpu", max_steps_per_epoch=1, wall_budget_min=0), TrainConfig
    )
    result = train(cfg)
    assert not result.complete and (result.epochs_run, result.steps) == (1, 1)
    ts = torch.load(Path(cfg.out) / "last.pt", weights_only=False)["train_state"]
    assert (ts["epoch"], ts["step"], ts["mid_epoch"]) == (0, 1, False)
    assert [r["epoch"] for r in csv.DictReader((Path(cfg.out) / "epochs.csv").open())] == ["1"]
