"""``perception calibrate``: a camera file from chessboard photos (intrinsics, distortion), from a video's lane
lines with a calibrated camera (``--mounting``: pitch, yaw, height), or from a video alone (``--auto``: the
self-calibration of ``camera: auto``). The measuring and the file's header are ``perception.calibration``'s."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from perception.cli.options import with_hfov
from perception.errors import ConfigError, InputError


def add_calibrate(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "calibrate",
        parents=[common],
        help="camera intrinsics from chessboard photos, or the mounting (pitch, yaw, height) from a video",
        description="perception calibrate IMAGES... --board 9x6 --out camera.yaml  |  "
        "perception calibrate --mounting VIDEO --camera camera.yaml --out mounted.yaml",
    )
    p.add_argument("images", nargs="*", metavar="IMAGES", help="chessboard photos: files, folders or globs")
    p.add_argument("--out", required=True, help="camera YAML to write")
    p.add_argument(
        "--board",
        default="9x6",
        metavar="COLSxROWS",
        help="inner corners, columns x rows (a board of 10x7 squares is 9x6; default 9x6)",
    )
    p.add_argument("--square-mm", type=float, default=25.0, help="side of one square in mm (default 25)")
    p.add_argument("--example", metavar="PNG", help="also write the first photo beside its undistorted version")
    p.add_argument("--mounting", metavar="VIDEO", help="estimate pitch, yaw and height from this video's lane lines")
    p.add_argument(
        "--auto",
        metavar="VIDEO",
        help="estimate the whole camera (focal length, pitch, yaw, height) from a video, as camera: auto does",
    )
    p.add_argument("--model", help="with --auto: model whose lane masks are used (default: the shipped model)")
    p.add_argument("--config", help="with --auto: pipeline preset (YAML)")
    p.add_argument("--max-frames", type=int, help="with --auto: stop after this many frames")
    p.add_argument("--camera", help="with --mounting: the calibrated camera YAML (scaled to the video's size)")
    p.add_argument(
        "--lane-width-m",
        type=float,
        help="ego lane width (default: 3.7, US highway, with --mounting; 3.6, camera: auto's prior, with --auto)",
    )
    p.add_argument(
        "--hfov",
        type=float,
        metavar="DEG",
        help="with --auto: the lens's horizontal field of view when known (spec sheet); the rest from the video",
    )
    p.add_argument("--frames", type=int, default=100, help="frames spread over the video to use (default 100)")
    p.add_argument("--note", help="a remark for the YAML's header comment (e.g. where the video comes from)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    name = Path(args.out).stem
    if args.auto:
        return _calibrate_auto(args, name)
    if args.mounting:
        return _calibrate_mounting(args, name)
    return _calibrate_chessboard(args, name)


def _calibrate_chessboard(args: argparse.Namespace, name: str) -> int:
    from perception.calibration import (
        calibrate_chessboard,
        chessboard_header,
        parse_board,
        save_undistorted_example,
        write_camera_yaml,
    )

    if not args.images:
        raise ConfigError("calibrate needs IMAGES (chessboard photos: files, folders or globs) or --mounting VIDEO")
    if args.square_mm <= 0:
        raise ConfigError(f"--square-mm must be > 0, got {args.square_mm:g}")
    cols, rows = board = parse_board(args.board)
    result = calibrate_chessboard(args.images, board=board, square_m=args.square_mm / 1000, name=name)
    print(result.format())
    command = (
        f"perception calibrate {shlex.join(args.images)} --board {cols}x{rows} --square-mm {args.square_mm:g} "
        f"--out {shlex.quote(args.out)}" + (f" --example {shlex.quote(args.example)}" if args.example else "")
    )
    write_camera_yaml(result.camera, args.out, chessboard_header(result, name, command, args.square_mm))
    print(f"wrote {args.out}")
    if args.example:
        # The first photo: in a calibration set it is usually the one that shows the distortion best.
        out = save_undistorted_example(result.camera, result.images[0], args.example)
        print(f"undistortion example ({Path(result.images[0]).name}): {out}")
    return 0


def _calibrate_mounting(args: argparse.Namespace, name: str) -> int:
    from perception.calibration import estimate_mounting, mounting_header, read_video_frames, write_camera_yaml
    from perception.camera_model import load_camera

    args.lane_width_m = 3.7 if args.lane_width_m is None else args.lane_width_m
    if args.images:
        raise ConfigError("--mounting VIDEO takes no IMAGES: calibrate from chessboard photos first, then --camera")
    if not args.camera:
        raise ConfigError("--mounting needs --camera CAMERA.yaml (from `perception calibrate IMAGES...`)")
    if args.example:
        raise ConfigError("--example is for chessboard calibration (IMAGES...), not for --mounting")
    camera = load_camera(args.camera)
    frames = read_video_frames(args.mounting, args.frames)
    h, w = frames[0].shape[:2]
    try:
        scaled = camera.scaled_to(w, h)
    except ValueError as err:
        raise ConfigError(f"{args.mounting}: {err} (camera file {args.camera})") from err
    est = estimate_mounting(
        frames, scaled, lane_width_m=args.lane_width_m, min_frames=min(10, len(frames)), source=args.mounting
    )
    print(est.format())
    command = (
        f"perception calibrate --mounting {shlex.quote(args.mounting)} --camera {shlex.quote(args.camera)} "
        f"--lane-width-m {args.lane_width_m:g} --frames {args.frames} --out {shlex.quote(args.out)}"
        + (f" --note {shlex.quote(args.note)}" if args.note else "")
    )
    header = mounting_header(est, name, command, args.mounting, args.camera, camera, args.note)
    write_camera_yaml(dataclasses.replace(scaled, mounting=est.mounting(), name=name), args.out, header)
    print(f"wrote {args.out} ({w}x{h}, mounting filled in)")
    return 0


def _calibrate_auto(args: argparse.Namespace, name: str) -> int:
    """calibrate --auto VIDEO: the self-calibration over a video, saved as a camera file for reuse."""
    from perception.calibration import auto_header, auto_summary, calibrate_auto, write_camera_yaml
    from perception.config import PipelineConfig, check_config, load_config
    from perception.pipeline import build_pipeline

    if args.images or args.mounting or args.camera:
        raise ConfigError("--auto VIDEO takes no IMAGES, --mounting or --camera: it estimates the whole camera")
    config = load_config(args.config) if args.config else PipelineConfig()
    pre = dataclasses.replace(config.preprocess, camera="auto", undistort=False)
    config = dataclasses.replace(
        config, preprocess=pre, model=str(Path(args.model).resolve()) if args.model else config.model
    )
    config = check_config(with_hfov(config, args.hfov), "command line")
    pipeline = build_pipeline(config, args.config, media=args.auto)
    camera, state, frames = calibrate_auto(args.auto, pipeline, args.max_frames, args.lane_width_m)
    summary = auto_summary(state, frames)
    if camera is None:
        raise InputError(
            f"{args.auto}: did not calibrate ({summary}): it needs seconds of straight driving between painted "
            "lines or clear road edges"
        )
    command = f"perception calibrate --auto {shlex.quote(args.auto)} --out {shlex.quote(args.out)}"
    header = auto_header(name, command, pipeline.contract.name, state, frames)
    write_camera_yaml(dataclasses.replace(camera, name=name), args.out, header)
    print(f"wrote {args.out}: {summary}")
    return 0
