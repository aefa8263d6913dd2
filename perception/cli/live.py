"""``perception camera`` (the live camera node) and ``perception soak`` (the node for N minutes on a looping
clip). The node itself is put together by ``perception.live.wiring``; here the command line becomes its
configs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from perception.cli.options import add_hfov_option, parse_roi, pipeline_config


def _live_options() -> argparse.ArgumentParser:
    """The options camera and soak share."""
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument(
        "--source",
        required=True,
        help="/dev/videoN or an index (V4L2), rtsp:// or http:// URL, a GStreamer pipeline ('... ! appsink'), "
        "or a video file",
    )
    opts.add_argument("--model", help="model file (.onnx, .engine, .pt); default: the shipped model")
    opts.add_argument("--config", help="pipeline preset YAML; its live: section configures the node")
    opts.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference backend")
    opts.add_argument("--threads", type=int, help="inference threads (0 = one per core)")
    opts.add_argument("--camera", help="camera YAML: lanes in metres, distances, TTC")
    add_hfov_option(opts)
    opts.add_argument("--no-fusion", action="store_true", help="no tracking, lanes or distances")
    opts.add_argument("--undistort", action="store_true", help="undistort frames with --camera")
    opts.add_argument("--roi", type=parse_roi, help="region of interest x,y,w,h in frame pixels")
    opts.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    opts.add_argument("--http", help="[HOST:]PORT for /health, /metrics, /preview.mjpg (host default 127.0.0.1)")
    opts.add_argument("--udp", help="HOST:PORT to send one JSON datagram per frame to")
    opts.add_argument("--zmq", help="ZeroMQ PUB endpoint to bind, e.g. tcp://127.0.0.1:5555 (needs pyzmq)")
    opts.add_argument("--log-dir", help="write rotating JSONL log files here")
    opts.add_argument("--ros2", action="store_true", help="publish on ROS 2 topics (needs rclpy, vision_msgs)")
    opts.add_argument("--max-age-ms", type=float, help="skip frames older than this (default 200)")
    opts.set_defaults(no_video=True)
    return opts


def live_config(args: argparse.Namespace, config, cfg_file: str | None):
    """The preset's ``live:`` section with the command line laid over it (relative log_dir from the config file)."""
    from perception.config import resolve

    live = config.live
    overrides = {
        "http": args.http,
        "udp": args.udp,
        "zmq": args.zmq,
        "log_dir": str(Path(args.log_dir).resolve()) if args.log_dir else None,
        "max_age_ms": args.max_age_ms,
    }
    live = dataclasses.replace(live, **{k: v for k, v in overrides.items() if v is not None})
    if args.ros2:
        live = dataclasses.replace(live, ros2=True)
    if live.log_dir and not args.log_dir:
        live = dataclasses.replace(live, log_dir=resolve(live.log_dir, cfg_file))
    return live


def build_camera_node(args: argparse.Namespace):
    """Everything ``perception camera`` and ``perception soak`` run: (node, http server or None)."""
    from perception.live.wiring import build_camera_node as build
    from perception.sources import parse_camera_source

    config, cfg_file = pipeline_config(args)
    live = live_config(args, config, cfg_file)
    spec = parse_camera_source(args.source, realtime=args.realtime, loop=args.loop)
    return build(config, cfg_file, live, spec)


def add_camera(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "camera", parents=[common, _live_options()], help="live camera node: capture → pipeline → UDP/ZeroMQ/HTTP/ROS 2"
    )
    p.add_argument("--realtime", action="store_true", help="a video file: play it at its frame rate, like a camera")
    p.add_argument("--loop", action="store_true", help="a video file: start again at its end")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    p.add_argument("--summary", help="also write the end-of-run summary as JSON to this file")
    p.set_defaults(func=cmd_camera)


def cmd_camera(args: argparse.Namespace) -> int:
    import threading

    from perception.live.wiring import stop_on_signals
    from perception.runner import configure_host_threads

    configure_host_threads()
    node, server = build_camera_node(args)
    stop = threading.Event()
    stop_on_signals(stop)
    if server is not None:
        server.start()
    try:
        summary = node.run(stop, duration_s=args.duration, max_frames=args.max_frames)
    finally:
        if server is not None:
            server.close()
    print(summary.format(), file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    if summary.frames_captured == 0 and node.capture.last_error:
        print(f"error: {node.capture.last_error}", file=sys.stderr)
        return 1
    return 0


def add_soak(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "soak",
        parents=[common, _live_options()],
        help="run the camera node on a looping clip for N minutes; memory, latency",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--out", default="out/soak", help="folder for soak.csv, soak.json, soak.png (default out/soak)")
    p.add_argument("--interval-s", type=float, default=10.0, help="sample every this many seconds (default 10)")
    p.add_argument("--warmup-s", type=float, default=30.0, help="memory baseline after this warm-up (default 30)")
    p.add_argument("--p99-limit-ms", type=float, default=100.0, help="latency limit for the verdict (default 100)")
    p.set_defaults(func=cmd_soak)


def cmd_soak(args: argparse.Namespace) -> int:
    import threading

    from perception.live.soak import soak
    from perception.live.wiring import stop_on_signals
    from perception.runner import configure_host_threads

    configure_host_threads()
    args.realtime, args.loop = True, True
    args.duration, args.max_frames = None, None
    node, server = build_camera_node(args)
    stop = threading.Event()
    stop_on_signals(stop)
    if server is not None:
        server.start()
    out = Path(args.out)
    try:
        report = soak(
            node,
            args.minutes,
            out,
            interval_s=args.interval_s,
            warmup_s=args.warmup_s,
            stop=stop,
            p99_limit_ms=args.p99_limit_ms,
        )
    finally:
        if server is not None:
            server.close()
    print(report.format())
    print(f"wrote {out / 'soak.csv'}, {out / 'soak.json'}, {out / 'soak.png'}", file=sys.stderr)
    return 0 if report.ok else 1
