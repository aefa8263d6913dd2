"""What several commands share: argument types and the pipeline options laid over a preset."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from perception.config import PipelineConfig, check_config, is_auto_camera, is_no_camera, load_config
from perception.errors import ConfigError


def parse_roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--roi needs x,y,w,h integers, got {text!r}") from err
    return x, y, w, h


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size needs WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from err
    if w < 64 or h < 48:
        raise argparse.ArgumentTypeError(f"size {w}x{h} is too small (at least 64x48)")
    return w, h


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"range needs LO,HI numbers, e.g. -3,3, got {text!r}") from err
    if hi < lo:
        raise argparse.ArgumentTypeError(f"range {text!r}: HI is below LO")
    return lo, hi


def add_hfov_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hfov",
        type=float,
        metavar="DEG",
        help="camera: auto: the lens's horizontal field of view when known (spec sheet); sets the focal length",
    )


def with_hfov(config: PipelineConfig, hfov_deg: float | None) -> PipelineConfig:
    """``config`` with ``--hfov`` (when given) as ``fusion.auto_camera.hfov_deg``."""
    if hfov_deg is None:
        return config
    auto = dataclasses.replace(config.fusion.auto_camera, hfov_deg=hfov_deg)
    return dataclasses.replace(config, fusion=dataclasses.replace(config.fusion, auto_camera=auto))


def pipeline_config(args: argparse.Namespace) -> tuple[PipelineConfig, str | None]:
    """The preset (if any) with command-line options laid over it (run, camera, soak, fleet run and scale)."""
    config = load_config(args.config) if args.config else PipelineConfig()
    cfg_file = args.config
    pre, post, out, backend = config.preprocess, config.postprocess, config.output, config.backend
    if args.camera:
        keyword = is_auto_camera(args.camera) or is_no_camera(args.camera)
        pre = dataclasses.replace(pre, camera=args.camera if keyword else str(Path(args.camera).resolve()))
    if args.undistort:
        pre = dataclasses.replace(pre, undistort=True)
    if args.roi:
        pre = dataclasses.replace(pre, roi=args.roi)
    if pre.undistort and (is_auto_camera(pre.camera) or is_no_camera(pre.camera)):
        raise ConfigError("undistortion needs a camera file: pass --camera CAMERA.yaml (see `perception calibrate`)")
    if args.score is not None:
        post = dataclasses.replace(post, score_threshold=args.score)
    if args.no_video:
        out = dataclasses.replace(out, video=False)
    if getattr(args, "no_fusion", False):
        config = dataclasses.replace(config, fusion=dataclasses.replace(config.fusion, enabled=False))
    config = with_hfov(config, getattr(args, "hfov", None))
    if args.backend:
        backend = dataclasses.replace(backend, name=args.backend)
    if args.threads is not None:
        backend = dataclasses.replace(backend, threads=args.threads)
    model = str(Path(args.model).resolve()) if args.model else config.model
    config = dataclasses.replace(config, model=model, preprocess=pre, postprocess=post, output=out, backend=backend)
    # the preset was checked as it loaded; the options laid over it get the same checks
    return check_config(config, "command line"), cfg_file
