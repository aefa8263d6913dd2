"""The ``perception`` command.

Errors a user can act on (``PerceptionError``) print one line naming the file and the problem and exit
non-zero; ``--debug`` adds the traceback. Exit codes: 0 done, 1 error or a problem with the input (the
summary says which), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from perception import __version__
from perception.config import PipelineConfig, load_config
from perception.errors import ConfigError, PerceptionError

log = logging.getLogger("perception")


def _roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--roi needs x,y,w,h integers, got {text!r}") from err
    return x, y, w, h


def _pipeline_config(args: argparse.Namespace) -> tuple[PipelineConfig, str | None]:
    """The preset (if any) with command-line options laid over it."""
    config = load_config(args.config) if args.config else PipelineConfig()
    cfg_file = args.config
    pre, post, out, backend = config.preprocess, config.postprocess, config.output, config.backend
    if args.camera:
        pre = dataclasses.replace(pre, camera=str(Path(args.camera).resolve()))
    if args.undistort:
        pre = dataclasses.replace(pre, undistort=True)
    if args.roi:
        pre = dataclasses.replace(pre, roi=args.roi)
    if pre.undistort and not pre.camera:
        raise ConfigError("undistortion needs a camera file: pass --camera CAMERA.yaml (see `perception calibrate`)")
    if args.score is not None:
        post = dataclasses.replace(post, score_threshold=args.score)
    if args.no_video:
        out = dataclasses.replace(out, video=False)
    if args.backend:
        backend = dataclasses.replace(backend, name=args.backend)
    if args.threads is not None:
        backend = dataclasses.replace(backend, threads=args.threads)
    model = str(Path(args.model).resolve()) if args.model else config.model
    config = dataclasses.replace(config, model=model, preprocess=pre, postprocess=post, output=out, backend=backend)
    return config, cfg_file


def cmd_run(args: argparse.Namespace) -> int:
    import cv2

    from perception.pipeline import build_pipeline
    from perception.runner import run_source
    from perception.sinks import ensure_writable_dir
    from perception.sources import open_source

    # Decode, inference and writing already run in parallel threads; OpenCV's own worker pool on top of
    # them only adds contention on a small CPU (measured: ~10 % more frames/s on 2 cores without it).
    cv2.setNumThreads(1)
    # A stage waiting for the GIL held by another stage's Python code waits up to the switch interval
    # (5 ms by default); measured here, that doubled preprocessing wall time (1.1 ms CPU, 3-4 ms wall).
    sys.setswitchinterval(0.0005)
    config, cfg_file = _pipeline_config(args)
    out_dir = Path(args.out) if args.out else Path("out") / Path(args.input).stem
    source = open_source(args.input)
    ensure_writable_dir(out_dir)  # before loading the model: fail fast on an output we cannot write
    pipeline = build_pipeline(config, cfg_file)
    log.info(
        "model %s (%s, %s); input %dx%d",
        pipeline.contract.name,
        pipeline.contract.format,
        pipeline.backend.description,
        pipeline.contract.input_size[1],
        pipeline.contract.input_size[0],
    )
    summary = run_source(
        source,
        pipeline,
        out_dir,
        write_jsonl=config.output.jsonl,
        write_video=config.output.video,
        video_fourcc=config.output.video_fourcc,
        overlay_alpha=config.output.overlay_alpha,
        queue_size=config.runner.queue_size,
        max_frames=args.max_frames,
        progress=config.runner.progress and not args.quiet,
    )
    print(summary.format(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from perception.runtime import build_backend

    backend = build_backend(args.backend or "auto", args.model)
    print(json.dumps(backend.contract.to_dict(), indent=2))
    print(f"backend: {backend.description}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"perception {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and the summary")
    # The same two flags after the command name; SUPPRESS keeps a flag given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="less output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the pipeline on a video file or an image folder")
    run.add_argument("input", help="video file (mp4, avi, mkv, ...) or a folder of images")
    run.add_argument("--model", help="model file (.onnx, or .pt for the torch backend); default: the shipped model")
    run.add_argument("--out", help="output folder (default: out/<input name>)")
    run.add_argument("--config", help="pipeline preset YAML (see configs/pipeline/)")
    run.add_argument("--backend", choices=["auto", "onnxruntime", "torch"], help="inference backend")
    run.add_argument("--threads", type=int, help="inference threads (0 = one per core)")
    run.add_argument("--camera", help="camera YAML (intrinsics, distortion)")
    run.add_argument("--undistort", action="store_true", help="undistort frames with --camera")
    run.add_argument("--roi", type=_roi, help="region of interest x,y,w,h in frame pixels")
    run.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    run.add_argument("--no-video", action="store_true", help="write results.jsonl only")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.set_defaults(func=cmd_run)

    inspect = sub.add_parser("inspect", parents=[common], help="print a model's contract after checking it")
    inspect.add_argument("model")
    inspect.add_argument("--backend", choices=["auto", "onnxruntime", "torch"])
    inspect.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # Decoder chatter ("moov atom not found", "Invalid NAL unit size") would bury our one-line
        # messages; these take effect only if set before cv2 is imported, which the CLI defers.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except PerceptionError as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
