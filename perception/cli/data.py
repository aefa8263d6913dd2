"""Data commands: ``perception synth`` (a synthetic dataset with exact labels), ``perception label`` (frames
labelled by the COCO teachers) and ``perception data stats|montage`` (look at a dataset)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from perception.cli.options import parse_range, parse_size
from perception.errors import ConfigError, OutputError


def add_synth(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("synth", parents=[common], help="render a synthetic driving dataset with exact labels")
    p.add_argument("--n", type=int, default=200, help="independent frames (default 200)")
    p.add_argument("--out", required=True, help="output folder (images, masks, COCO JSON, YOLO txt)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same dataset (default 0)")
    p.add_argument("--size", type=parse_size, default=(640, 360), help="WIDTHxHEIGHT (default 640x360)")
    p.add_argument("--val", type=float, default=0.1, help="fraction of frames in the val split (default 0.1)")
    p.add_argument("--clips", type=int, default=0, help="temporally coherent clips to add (default 0)")
    p.add_argument("--clip-frames", type=int, help="frames per clip (default 60; 20 with --format tusimple)")
    p.add_argument(
        "--format",
        choices=("folder", "tusimple"),
        default="folder",
        help="folder: the perception folder layout (default); tusimple: clips/<clip>/<n>.jpg + label_data.json "
        "(TuSimple lanes; needs --clips)",
    )
    p.add_argument(
        "--label-frames",
        choices=("last", "all"),
        default="last",
        help="--format tusimple: label the last frame of each clip, as TuSimple (default), or every frame",
    )
    p.add_argument("--fps", type=float, default=10.0, help="clip frame rate (default 10)")
    p.add_argument("--density", type=float, default=1.0, help="traffic and clutter multiplier (default 1)")
    p.add_argument("--night", type=float, default=0.15, help="probability of a night frame (default 0.15)")
    p.add_argument("--weather", type=float, default=0.2, help="probability of rain or fog (default 0.2)")
    p.add_argument("--workers", type=int, default=0, help="rendering processes (default: one per core)")
    p.add_argument("--markings", choices=("any", "us"), default="any", help="us: every road US-marked")
    p.add_argument(
        "--centred-principal-point", action="store_true", help="cameras with the principal point at the image centre"
    )
    for flag, key, default in (
        ("--hfov", "hfov_deg", "50,75"),
        ("--height", "height_m", "1.15,1.7"),
        ("--pitch", "pitch_deg", "-0.5,4"),
        ("--yaw", "yaw_deg", "normal, sigma 1"),
        ("--roll", "roll_deg", "normal, sigma 0.7"),
    ):
        p.add_argument(
            flag, dest=key, type=parse_range, help=f"camera {key}: LO,HI drawn uniformly (default {default})"
        )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.synth.generate import SynthOptions, write_montage, write_synth_dataset
    from perception.paths import ensure_writable_dir

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise OutputError(f"{out}: folder is not empty (pass --overwrite to write into it anyway)")
    ensure_writable_dir(out)
    cv2.setNumThreads(1)  # parallelism comes from --workers processes
    camera_ranges = {
        key: getattr(args, key)
        for key in ("hfov_deg", "height_m", "pitch_deg", "yaw_deg", "roll_deg")
        if getattr(args, key)
    }
    opts = SynthOptions(
        size=args.size,
        density=args.density,
        night_p=args.night,
        weather_p=args.weather,
        markings=args.markings,
        principal_jitter=not args.centred_principal_point,
        **camera_ranges,
    )
    workers = args.workers or os.cpu_count() or 1
    if args.format == "tusimple":
        return _synth_tusimple(args, out, opts, workers)
    report = write_synth_dataset(
        out,
        args.n,
        seed=args.seed,
        val_fraction=args.val,
        clips=args.clips,
        clip_frames=60 if args.clip_frames is None else args.clip_frames,
        fps=args.fps,
        opts=opts,
        workers=workers,
        progress=not args.quiet,
    )
    write_montage(out, report["counts"])
    _write_report(out, report, args, workers)
    counts = ", ".join(f"{split} {c['images']}" for split, c in report["counts"].items())
    print(
        f"wrote {report['frames']} frames ({counts}) to {out} in {report['seconds']} s: "
        f"{report['fps']} frames/s with {workers} worker(s) on {os.cpu_count()} cores; montage: {out / 'montage.png'}"
    )
    return 0


def _synth_tusimple(args: argparse.Namespace, out: Path, opts, workers: int) -> int:
    """``perception synth --format tusimple``: clips in TuSimple's layout (perception/data/synth/tusimple.py)."""
    from perception.data.synth.tusimple import LABEL_FILE, write_tusimple_synth

    clip_frames = 20 if args.clip_frames is None else args.clip_frames
    if args.clips < 1 or clip_frames < 1:
        raise ConfigError("--format tusimple writes clips: pass --clips K and --clip-frames N >= 1 (--n is not used)")
    report = write_tusimple_synth(
        out,
        args.clips,
        clip_frames,
        seed=args.seed,
        fps=args.fps,
        opts=opts,
        workers=workers,
        progress=not args.quiet,
        label_frames=args.label_frames,
    )
    _write_report(out, report, args, workers)
    c = report["counts"]
    print(
        f"wrote {c['images']} frames ({c['clips']} clips) to {out} in TuSimple's layout, {c['labelled']} labelled "
        f"with {c['lanes']} lanes in {out / LABEL_FILE}, in {report['seconds']} s ({report['fps']} frames/s)"
    )
    return 0


def _write_report(out: Path, report: dict, args: argparse.Namespace, workers: int) -> None:
    report.update(workers=workers, cores=os.cpu_count(), size=list(args.size), seed=args.seed)
    (out / "synth_report.json").write_text(json.dumps(report, indent=2) + "\n")


def add_label(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "label", parents=[common], help="label frames with the COCO teachers (WBF) into a perception folder dataset"
    )
    p.add_argument(
        "--teachers", default="yolox,picodet,yolofastest", help="comma-separated: yolox, picodet, yolofastest"
    )
    p.add_argument(
        "--data", required=True, help="KIND:PATH (e.g. camvid:../shared/data/camvid), video:PATH or images:DIR"
    )
    p.add_argument("--split", default="train", help="dataset split to read, and the split written (default train)")
    p.add_argument("--out", required=True, help="output folder (perception folder layout)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation per teacher (flip + 1.6x tiles)")
    p.add_argument("--lanes", metavar="NAME", help="lane labels from a lane teacher: twinlitenetplus")
    p.add_argument(
        "--camvid-boxes",
        choices=["component", "teacher", "both"],
        help="camvid: mask-component boxes only (default), split by teacher instances, or both",
    )
    p.add_argument(
        "--lane-autolabel",
        action="store_true",
        help="camvid: paint found by the lane auto-labeller (docs/autolabel.md) written as lane positives",
    )
    p.add_argument("--every", type=int, default=1, metavar="K", help="every K-th frame (default 1)")
    p.add_argument("--positive-score", type=float, default=0.4, help="fused score for a box label (default 0.4)")
    p.add_argument("--ignore-score", type=float, default=0.15, help="fused score for an ignore box (default 0.15)")
    p.add_argument("--class-map", help="class-map YAML for KIND:PATH data (default: configs/datasets/<kind>.yaml)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    p.set_defaults(func=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    """Label frames with the COCO teachers (+ TwinLiteNet+ lanes) into a perception folder dataset."""
    import cv2

    from perception.data.sample import SEG_CLASSES
    from perception.teachers.detectors import build_teacher, parse_teacher_names
    from perception.teachers.ensemble import TeacherEnsemble
    from perception.teachers.label import TEACHER_SCORE_FLOOR, Labeller, label_to_folder, open_frames
    from perception.teachers.lanes import LANE_TEACHERS, TwinLiteNetPlus

    cv2.setNumThreads(1)
    names = parse_teacher_names(args.teachers)
    if args.lanes is not None and args.lanes not in LANE_TEACHERS:
        raise ConfigError(f"unknown lane teacher {args.lanes!r} (valid: {', '.join(LANE_TEACHERS)})")
    if args.lane_autolabel and not args.data.startswith("camvid:"):
        raise ConfigError(f"--lane-autolabel is for camvid data, not {args.data}")
    options = {"lane_autolabel": True} if args.lane_autolabel else None
    frames = open_frames(args.data, args.split, args.every, args.class_map, dataset_options=options)
    if args.camvid_boxes is not None and frames.kind != "camvid":
        raise ConfigError(f"--camvid-boxes is for camvid data, not {frames.kind}")
    teachers = [
        build_teacher(n, threads=args.threads, score_threshold=TEACHER_SCORE_FLOOR, tta=args.tta) for n in names
    ]
    labeller = Labeller(
        TeacherEnsemble(teachers, skip_box_thr=TEACHER_SCORE_FLOOR),
        positive_threshold=args.positive_score,
        ignore_threshold=args.ignore_score,
        lanes=TwinLiteNetPlus(threads=args.threads) if args.lanes else None,
        camvid_boxes=args.camvid_boxes or "component",
        seg_classes=frames.dataset.seg_classes if frames.dataset is not None else SEG_CLASSES,
    )
    licences = "; ".join(f"{t.name}: {t.licence}" for t in teachers)
    description = f"teacher labels of {args.data} ({args.split}) by {', '.join(labeller.ensemble.names)} [{licences}]"
    if args.lanes:
        description += f"; lanes by {args.lanes} [{labeller.lanes.licence}]"
    summary = label_to_folder(
        frames, labeller, args.out, split=args.split, progress=not args.quiet, description=description
    )
    per_class = ", ".join(f"{k} {v}" for k, v in summary["positives_per_class"].items())
    print(
        f"labelled {summary['frames']} frames into {args.out} ({args.split}) in {summary['seconds']} s: "
        f"{summary['boxes'] - summary['ignored_boxes']} boxes ({per_class}), {summary['ignored_boxes']} ignore boxes"
    )
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} frames could not be read, e.g. {summary['skipped'][0]}")
        return 1
    return 0


def add_data(sub, common: argparse.ArgumentParser) -> None:
    data = sub.add_parser("data", parents=[common], help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    stats = data_sub.add_parser(
        "stats", parents=[common], help="count samples, masks, boxes per class and pixel fractions of a dataset"
    )
    stats.add_argument(
        "spec",
        help="KIND:PATH, e.g. camvid:../shared/data/camvid (kinds: camvid, cityscapes, bdd100k, coco, yolo, synthetic)",
    )
    stats.add_argument("--split", default="train", help="dataset split (default: train)")
    stats.add_argument("--class-map", help="class-map YAML (default: configs/datasets/<kind>.yaml)")
    stats.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a broken sample stops the run (raise, default) or is counted and skipped (skip)",
    )
    stats.add_argument(
        "--bad-boxes",
        choices=["error", "drop"],
        default="error",
        help="boxes with no area inside the image: error (default) or drop and count",
    )
    stats.add_argument("--json", help="also write the numbers to this JSON file")
    stats.add_argument("--lane-autolabel", action="store_true", help="camvid: mark auto-labelled lane paint")
    stats.set_defaults(func=cmd_data_stats)
    mont = data_sub.add_parser(
        "montage", parents=[common], help="tile samples with their labels drawn over them into one PNG, to look at"
    )
    mont.add_argument("spec", help="KIND:PATH, as for `data stats`")
    mont.add_argument("--out", required=True, help="PNG to write")
    mont.add_argument("--split", default="train")
    mont.add_argument("--class-map", help="class-map YAML (default: configs/datasets/<kind>.yaml)")
    mont.add_argument("--n", type=int, default=12, help="samples, spread evenly over the split (default 12)")
    mont.add_argument("--cols", type=int, default=4)
    mont.add_argument("--width", type=int, default=320, help="tile width in pixels (default 320)")
    mont.add_argument("--lane-autolabel", action="store_true", help="camvid: mark auto-labelled lane paint")
    mont.set_defaults(func=cmd_data_montage)


def _dataset_kwargs(kind: str, args: argparse.Namespace) -> dict:
    """Loader options from the command line that only some dataset kinds have."""
    if getattr(args, "lane_autolabel", False):
        if kind != "camvid":
            raise ConfigError(f"--lane-autolabel is for camvid (its masks have no lane class), not {kind}")
        return {"lane_autolabel": True}
    return {}


def cmd_data_stats(args: argparse.Namespace) -> int:
    from perception.data.registry import build_dataset, parse_data_spec
    from perception.data.stats import dataset_stats

    kind, root = parse_data_spec(args.spec)
    dataset = build_dataset(
        kind, root, split=args.split, class_map=args.class_map, bad_boxes=args.bad_boxes, **_dataset_kwargs(kind, args)
    )
    stats = dataset_stats(dataset, on_error=args.on_error)
    print(stats.format())
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
        except OSError as err:
            raise OutputError(f"{args.json}: cannot write ({err.strerror or err})") from err
    return 0


def cmd_data_montage(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.overlay import montage
    from perception.data.registry import build_dataset, parse_data_spec

    kind, root = parse_data_spec(args.spec)
    dataset = build_dataset(kind, root, split=args.split, class_map=args.class_map, **_dataset_kwargs(kind, args))
    if len(dataset) == 0:
        raise ConfigError(f"{args.spec}: split {args.split!r} is empty")
    step = max(1, len(dataset) // args.n)
    picked = [dataset[i] for i in range(0, len(dataset), step)[: args.n]]
    image = montage(
        picked, cols=args.cols, tile_width=args.width, seg_classes=dataset.seg_classes, det_classes=dataset.det_classes
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OutputError(f"{out}: cannot write the montage (is the suffix .png or .jpg?)")
    print(f"{len(picked)} samples of {kind} {args.split} -> {out} ({image.shape[1]}x{image.shape[0]})")
    return 0
