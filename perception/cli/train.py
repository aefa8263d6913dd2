"""``perception train`` (a network from a YAML config; ``torchrun ... -m perception train`` for DDP) and
``perception export`` (a checkpoint to ONNX / INT8 / TensorRT, checked against PyTorch). Both need the
``train`` extra (torch)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from perception.cli.options import parse_size


def add_train(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a network from a YAML config (torchrun for DDP)")
    p.add_argument("config", help="training config YAML (see configs/train/)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt after a stop or kill")
    p.add_argument("--out", help="run folder (default: the config's 'out')")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: the config's; auto = cuda when available)")
    p.add_argument(
        "--budget-min",
        type=float,
        help="stop cleanly after this many minutes of wall time (last.pt saved; continue with --resume)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from perception.config import load_config
    from perception.train.config import TrainConfig
    from perception.train.engine import train

    cfg = load_config(args.config, TrainConfig)
    overrides = {k: v for k, v in (("out", args.out), ("epochs", args.epochs), ("device", args.device)) if v}
    if overrides.get("out"):
        overrides["out"] = str(Path(overrides["out"]).resolve())
    if args.budget_min is not None:
        overrides["wall_budget_min"] = args.budget_min
    cfg = dataclasses.replace(cfg, **overrides)
    result = train(cfg, args.config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"trained {result.epochs_run} epochs ({result.steps} steps) in {result.wall_s / 60:.1f} min; "
            f"checkpoints: {result.last}" + (f", {result.best}" if result.best else "")
        )
        if not result.complete:
            print(
                f"stopped at the wall budget ({cfg.wall_budget_min:g} min) after step {result.steps}; "
                f"continue with: perception train {args.config} --resume"
            )
    return 0


def add_export(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX / INT8 / TensorRT and check it")
    p.add_argument("checkpoint", help="training checkpoint (.pt)")
    p.add_argument("--out", required=True, help="file to write (.onnx, or .engine for tensorrt)")
    p.add_argument(
        "--format",
        choices=["onnx", "onnx-raw", "onnx-int8", "tensorrt"],
        default="onnx",
        help="onnx: fused (NMS in the graph); onnx-raw: NMS on the host; onnx-int8: fused + static INT8 "
        "(needs --calib); tensorrt: engine with EfficientNMS (needs an NVIDIA GPU)",
    )
    p.add_argument(
        "--frame-size",
        type=parse_size,
        metavar="WxH",
        help="whole-frame variant for a fixed camera: the graph letterboxes WxH frames itself",
    )
    p.add_argument("--calib", help="INT8 calibration frames: dataset spec (camvid:DIR), video or image folder")
    p.add_argument("--calib-frames", type=int, default=300, help="frames for INT8 calibration (default 300)")
    p.add_argument(
        "--calib-method",
        choices=["entropy", "percentile", "minmax"],
        default="entropy",
        help="INT8 activation ranges (default entropy)",
    )
    p.add_argument(
        "--int8-float",
        metavar="MODULES",
        help="comma-separated module paths left float in onnx-int8 (backbone.dark3,det_head.cls_preds; "
        "'none' quantizes all); default: the network's own list",
    )
    p.add_argument("--precision", choices=["fp16", "int8", "fp32"], default="fp16", help="TensorRT precision")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of the TensorRT engine's profile")
    p.add_argument("--score", type=float, default=0.25, help="score threshold baked into the in-graph NMS")
    p.add_argument(
        "--display-score",
        type=float,
        help="the host's default score threshold, when --score is low to keep the whole ranking for mAP "
        "(runs show boxes above it; eval scores the whole ranking)",
    )
    p.add_argument("--name", help="model name in the contract (default: the checkpoint's)")
    p.add_argument("--check-frames", help="image folder or video for the ONNX-vs-PyTorch check (default: noise)")
    p.add_argument(
        "--provenance",
        metavar="FILE.yaml",
        help="init weights, teachers and datasets with their licences (configs/models/*_provenance.yaml), "
        "stored in the contract for `perception inspect`",
    )
    p.set_defaults(func=cmd_export)


def _module_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return () if text.strip() == "none" else tuple(m.strip() for m in text.split(",") if m.strip())


def cmd_export(args: argparse.Namespace) -> int:
    from perception.export.checkpoint_export import export_checkpoint

    report = export_checkpoint(
        args.checkpoint,
        args.out,
        score_threshold=args.score,
        check_frames=args.check_frames,
        name=args.name,
        format=args.format,
        frame_size=(args.frame_size[1], args.frame_size[0]) if args.frame_size else None,
        calib=args.calib,
        calib_frames=args.calib_frames,
        calib_method=args.calib_method,
        int8_float=_module_list(args.int8_float),
        precision=args.precision,
        max_batch=args.max_batch,
        display_score=args.display_score,
        provenance=args.provenance,
    )
    print(report)
    return 0
