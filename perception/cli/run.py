"""``perception run`` (a video or an image folder through the pipeline), ``perception bench`` (where the time of
a frame goes) and ``perception inspect`` (a model's contract)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from perception.cli.options import add_hfov_option, parse_roi, pipeline_config

log = logging.getLogger("perception")


def add_run(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run the pipeline on a video file or an image folder")
    p.add_argument(
        "input",
        help="video file (mp4, avi, mkv, ...): writes annotated.mp4; or a folder of images (or one image): writes "
        "annotated/<same file name> per image",
    )
    p.add_argument("--model", help="model file (.onnx, or .pt for the torch backend); default: the shipped model")
    p.add_argument("--out", help="output folder (default: out/<input name>)")
    p.add_argument("--config", help="pipeline preset YAML (see configs/pipeline/)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference backend")
    p.add_argument("--threads", type=int, help="inference threads (0 = one per core)")
    p.add_argument(
        "--camera",
        help="camera YAML (intrinsics, distortion, mounting): lanes in metres, distances, TTC; see calibrate",
    )
    add_hfov_option(p)
    p.add_argument("--no-fusion", action="store_true", help="no tracking, lanes or distances (boxes and masks only)")
    p.add_argument("--undistort", action="store_true", help="undistort frames with --camera")
    p.add_argument("--roi", type=parse_roi, help="region of interest x,y,w,h in frame pixels")
    p.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    p.add_argument(
        "--no-video", action="store_true", help="no annotated video or images: results.jsonl and summary.json only"
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--batch", type=int, help="frames per network call (offline throughput; default 1)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from perception.paths import ensure_writable_dir
    from perception.pipeline import build_pipeline
    from perception.runner import configure_host_threads, run_source
    from perception.sources import open_source

    configure_host_threads()
    config, cfg_file = pipeline_config(args)
    out_dir = Path(args.out) if args.out else Path("out") / Path(args.input).stem
    source = open_source(args.input)
    ensure_writable_dir(out_dir)  # before loading the model: fail fast on an output we cannot write
    pipeline = build_pipeline(config, cfg_file, media=args.input)
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
        batch_size=args.batch or config.runner.batch_size,
    )
    print(summary.format(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def add_bench(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], help="per-stage timings and frames/s, side by side with the peers")
    p.add_argument("input", help="video (or image folder) to run over, e.g. ../shared/data/clips/solidWhiteRight.mp4")
    p.add_argument("--model", action="append", help="model file; repeat to compare (default: the shipped model)")
    p.add_argument("--mode", choices=["offline", "live"], default="offline", help="throughput or per-frame latency")
    p.add_argument("--runs", type=int, default=5, help="timed passes over the video per model (default 5)")
    p.add_argument("--batch", type=int, default=4, help="frames per network call in offline mode (default 4)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    p.add_argument("--peers", action="store_true", help="also run the peer stack (TwinLiteNet + NanoDet-m)")
    p.add_argument("--video", action="store_true", help="also draw and encode the annotated video")
    p.add_argument("--max-frames", type=int, help="frames per pass (default: the whole video)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--camera", help="camera YAML: fusion also fits lanes and distances (else it only tracks)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from perception.bench import run_bench

    models = [str(Path(m).resolve()) for m in args.model] if args.model else [None]
    text = run_bench(
        args.input,
        models,
        mode=args.mode,
        runs=args.runs,
        batch=args.batch,
        threads=args.threads,
        peers=args.peers,
        video=args.video,
        max_frames=args.max_frames,
        json_path=args.json,
        camera=str(Path(args.camera).resolve()) if args.camera else None,
        log=(lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)),
    )
    print(text)
    return 0


def add_inspect(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", parents=[common], help="print a model's contract after checking it")
    p.add_argument("model")
    p.add_argument("--time", type=int, metavar="N", help="also time the network forward: median of N runs")
    p.add_argument("--threads", type=int, help="inference threads for --time (0 = one per core)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from perception.runtime import build_backend

    kwargs = {"threads": args.threads} if args.threads is not None else {}
    backend = build_backend(args.backend or "auto", args.model, **kwargs)
    print(json.dumps(backend.contract.to_dict(), indent=2))
    print(f"backend: {backend.description}", file=sys.stderr)
    if args.time:
        from perception.runtime.timing import time_forward

        t = time_forward(backend, runs=args.time)
        print(
            f"network forward at {t['input']} on {os.cpu_count()} cores, {t['threads']} threads: median "
            f"{t['median_ms']:.2f} ms, p90 {t['p90_ms']:.2f} ms over {args.time} runs "
            f"({backend.description}; letterboxed frame in, outputs out, no host pre/post-processing)"
        )
    return 0
