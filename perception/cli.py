"""The ``perception`` command.

Errors a user can act on (``PerceptionError``) print one line naming the file and the problem and exit
non-zero; ``--debug`` adds the traceback. Exit codes: 0 done, 1 error or a problem with the input (the
summary says which), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from perception import __version__
from perception.config import PipelineConfig, is_auto_camera, is_no_camera, load_config
from perception.errors import ConfigError, InputError, OutputError, PerceptionError

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
    if args.backend:
        backend = dataclasses.replace(backend, name=args.backend)
    if args.threads is not None:
        backend = dataclasses.replace(backend, threads=args.threads)
    model = str(Path(args.model).resolve()) if args.model else config.model
    config = dataclasses.replace(config, model=model, preprocess=pre, postprocess=post, output=out, backend=backend)
    return config, cfg_file


def cmd_run(args: argparse.Namespace) -> int:
    from perception.paths import ensure_writable_dir
    from perception.pipeline import build_pipeline
    from perception.runner import configure_host_threads, run_source
    from perception.sources import open_source

    configure_host_threads()
    config, cfg_file = _pipeline_config(args)
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


def cmd_synth(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.folder import FolderDataset
    from perception.data.overlay import montage
    from perception.data.synth.generate import SynthOptions, write_synth_dataset
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
    picks = []
    for split, k in (("train", 8), ("val", 2), ("clips", 2)):
        if report["counts"].get(split):
            ds = FolderDataset(out, split)
            step = max(1, len(ds) // k)
            picks += [ds[i] for i in range(0, len(ds), step)[:k]]
    if picks:
        cv2.imwrite(str(out / "montage.png"), montage(picks, cols=4, tile_width=400))
    report.update(workers=workers, cores=os.cpu_count(), size=list(args.size), seed=args.seed)
    (out / "synth_report.json").write_text(json.dumps(report, indent=2) + "\n")
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
    report.update(workers=workers, cores=os.cpu_count(), size=list(args.size), seed=args.seed)
    (out / "synth_report.json").write_text(json.dumps(report, indent=2) + "\n")
    c = report["counts"]
    print(
        f"wrote {c['images']} frames ({c['clips']} clips) to {out} in TuSimple's layout, {c['labelled']} labelled "
        f"with {c['lanes']} lanes in {out / LABEL_FILE}, in {report['seconds']} s ({report['fps']} frames/s)"
    )
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


def _eval_table_keys(results: dict[str, dict[str, float]]) -> list[str]:
    """The metrics the eval table shows: every model's keys, in order, of the headline kinds."""
    prefixes = ("seg.iou.", "seg.dice.", "seg.miou", "seg.hood", "lanes.", "det.map", "det.ap50.")
    prefixes += ("video.", "speed.fps")
    return [
        k
        for k in dict.fromkeys(k for metrics in results.values() for k in metrics)
        if k.startswith(prefixes) or k in ("frames", "skipped")
    ]


def cmd_eval(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.registry import build_dataset, parse_data_spec
    from perception.eval.evaluate import evaluate, format_table
    from perception.eval.predictors import build_predictor
    from perception.eval.report import nan_to_null, safe_name, write_eval_plots, write_report
    from perception.paths import ensure_writable_dir

    cv2.setNumThreads(1)
    models = list(args.compare) if args.compare else (args.model or ["default"])
    kind, root = parse_data_spec(args.data)
    dataset = build_dataset(kind, root, split=args.split, class_map=args.class_map)
    out = Path(args.out) if args.out else Path("out") / "eval" / f"{kind}_{args.split}"
    ensure_writable_dir(out)
    if kind == "tusimple":
        return _eval_tusimple(args, models, dataset, out)
    results: dict[str, dict[str, float]] = {}
    for spec in models:
        predictor = build_predictor(spec, threads=args.threads, score_threshold=args.score)
        log.info("evaluating %s on %s %s (%d samples)", spec, kind, args.split, len(dataset))
        try:
            result = evaluate(predictor, dataset, max_frames=args.max_frames, progress=not args.quiet)
        except ValueError as err:
            raise ConfigError(f"{spec} on {args.data}: {err}") from err
        name = spec if spec not in results else f"{spec}#{len(results)}"
        results[name] = result.metrics
        target = out if len(models) == 1 else out / safe_name(name)
        ensure_writable_dir(target)
        payload = {
            "model": spec,
            "data": args.data,
            "split": args.split,
            "metrics": result.metrics,
            "skipped": result.skipped.examples,
            "frames": result.frames,
        }
        (target / "metrics.json").write_text(json.dumps(nan_to_null(payload), indent=2) + "\n")
        write_eval_plots(target, result, predictor, dataset)
        if result.skipped.total:
            log.warning("%d samples could not be loaded (see metrics.json 'skipped')", result.skipped.total)
    keys = _eval_table_keys(results)
    print(format_table(results, keys))
    if len(models) > 1:
        (out / "comparison.json").write_text(json.dumps(nan_to_null(results), indent=2) + "\n")
    report = write_report(out, results, args.data, args.split, dataset.seg_classes, dataset.det_classes)
    print(f"report: {report}")
    return 0


def _eval_tusimple(args: argparse.Namespace, models: list[str], dataset, out: Path) -> int:
    """``perception eval --data tusimple:DIR``: each model through the pipeline and scene fusion of ``perception
    run``, its lanes scored in TuSimple's format; metrics.json and tusimple_predictions.json per model."""
    from perception.eval.evaluate import format_table
    from perception.eval.report import nan_to_null, safe_name, write_report
    from perception.eval.tusimple import PREDICTIONS_FILE, build_lane_predictor, evaluate_tusimple
    from perception.paths import ensure_writable_dir

    config = load_config(args.config) if args.config else PipelineConfig()
    if args.camera:  # a camera file (resolved here), or a keyword the preset also takes
        camera = str(Path(args.camera).resolve()) if Path(args.camera).is_file() else args.camera
        config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, camera=camera))
    results: dict[str, dict[str, float]] = {}
    for spec in models:
        predictor = build_lane_predictor(spec, config, args.config, threads=args.threads, score_threshold=args.score)
        name = spec if spec not in results else f"{spec}#{len(results)}"
        target = out if len(models) == 1 else out / safe_name(name)
        ensure_writable_dir(target)
        log.info("evaluating %s lanes on %s (%d samples)", spec, args.data, len(dataset))
        result = evaluate_tusimple(
            predictor, dataset, target / PREDICTIONS_FILE, max_frames=args.max_frames, progress=not args.quiet
        )
        results[name] = result.metrics
        payload = {
            "model": spec,
            "data": args.data,
            "split": args.split,
            "metrics": result.metrics,
            "predictions": PREDICTIONS_FILE,
            "skipped": result.skipped.examples,
            "frames": result.frames,
        }
        (target / "metrics.json").write_text(json.dumps(nan_to_null(payload), indent=2) + "\n")
        if result.skipped.total:
            log.warning("%d samples could not be loaded (see metrics.json 'skipped')", result.skipped.total)
    print(format_table(results, _eval_table_keys(results)))
    if len(models) > 1:
        (out / "comparison.json").write_text(json.dumps(nan_to_null(results), indent=2) + "\n")
    report = write_report(out, results, args.data, args.split, dataset.seg_classes, dataset.det_classes)
    print(f"report: {report}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.sample import DET_CLASSES
    from perception.eval.agreement import agreement_recall
    from perception.eval.predictors import build_predictor
    from perception.eval.report import nan_to_null
    from perception.paths import ensure_writable_dir
    from perception.progress import Progress
    from perception.sources import BadFrame, VideoFileSource
    from perception.teachers.detectors import build_teacher, parse_teacher_names
    from perception.teachers.ensemble import TeacherEnsemble

    cv2.setNumThreads(1)
    names = parse_teacher_names(args.teachers)
    ensemble = TeacherEnsemble(
        [build_teacher(n, threads=args.threads, score_threshold=args.min_score) for n in names],
        skip_box_thr=args.min_score,
    )
    out = Path(args.out) if args.out else Path("out") / "agreement"
    ensure_writable_dir(out)
    results = {}
    for spec in args.model or ["default"]:
        predictor = build_predictor(spec, threads=args.threads, whole_ranking=False)  # boxes a run shows
        if tuple(predictor.det_classes) != DET_CLASSES:
            raise ConfigError(f"{spec}: detection classes {predictor.det_classes} are not the teachers' {DET_CLASSES}")
        source = VideoFileSource(args.video)
        bad: list[BadFrame] = []

        def decoded(source=source, bad=bad):
            for f in source:
                if isinstance(f, BadFrame):
                    bad.append(f)
                else:
                    yield f.image

        bar = Progress(source.expected_frames, enabled=not args.quiet, unit=f"frames ({spec})")
        frames = itertools.islice(decoded(), args.max_frames)
        counts = agreement_recall(predictor, ensemble, frames, DET_CLASSES, args.min_agree, args.iou, progress=bar)
        bar.finish()
        source.close()
        if bad:
            log.warning("%s: %d frames could not be decoded, e.g. %s", args.video, len(bad), bad[0])
        results[spec] = counts.metrics()
    header = f"{'class':14s}" + "".join(f"{spec[-28:]:>30s}" for spec in results)
    print(
        f"objects that >= {args.min_agree} of {', '.join(names)} box with score >= {args.min_score}, found at IoU "
        f">= {args.iou} (recall | frames with all found):"
    )
    print(header)
    for c in (*DET_CLASSES, None):
        key = f"agree.recall.{c}" if c else "agree.recall"
        row = f"{(c or 'all'):14s}"
        for m in results.values():
            all_found = m.get(f"agree.frames_all_found.{c}", float("nan")) if c else float("nan")
            refs = f" of {int(m[f'agree.refs.{c}'])}" if c else ""
            row += f"{m[key]:>10.3f} | {all_found:5.3f}{refs:>11s}"
        print(row)
    payload = {
        "video": args.video,
        "teachers": names,
        "min_score": args.min_score,
        "min_agree": args.min_agree,
        "iou": args.iou,
        "metrics": results,
    }
    (out / "agreement.json").write_text(json.dumps(nan_to_null(payload), indent=2) + "\n")
    print(f"written: {out / 'agreement.json'}")
    return 0


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


def cmd_scene_eval(args: argparse.Namespace) -> int:
    """Fusion against the synthetic world's truth (lanes, offset, distances, TTC, tracking)."""
    from perception.config import FusionConfig
    from perception.data.registry import build_dataset, parse_data_spec
    from perception.eval.scene import SceneMetrics, evaluate_scene, format_summary
    from perception.fusion.self_calibration import SelfCalibration
    from perception.pipeline import build_fuser, build_pipeline

    datasets = []
    for spec in args.data:
        kind, root = parse_data_spec(spec)
        if kind != "synthetic":
            raise ConfigError(
                f"--data {spec}: scene evaluation needs synthetic clips (their truth has lanes in metres)"
            )
        dataset = build_dataset(kind, root, split=args.split)
        if len(dataset) == 0:
            raise ConfigError(
                f"{root}: split '{args.split}' holds no frames (make clips with `perception synth --clips K`)"
            )
        datasets.append((spec, dataset))
    fusion = FusionConfig()
    out: dict = {}
    for name in args.model or ["oracle"]:
        pipeline = None
        if name != "oracle":
            cfg = PipelineConfig(model=None if name == "default" else str(Path(name).resolve()))
            cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, enabled=False))
            pipeline = build_pipeline(cfg)
        pooled: SceneMetrics | None = None
        per_set = {}
        for spec, dataset in datasets:
            if pipeline is None:  # the oracle: the truth's own classes
                classes, perceive = (dataset.det_classes, dataset.seg_classes), None
            else:
                classes, perceive = (pipeline.contract.det_classes, pipeline.contract.seg_classes), pipeline
            if args.camera == "auto":

                def make_fuser(_true_camera, c=classes):
                    return build_fuser(fusion, *c, SelfCalibration(), undistorted_frame=False)
            else:

                def make_fuser(true_camera, c=classes):
                    return build_fuser(fusion, *c, true_camera, undistorted_frame=False)

            metrics = evaluate_scene(
                dataset, make_fuser, perceive, max_clips=args.max_clips, score_after_s=args.score_after
            )
            if len(datasets) > 1:
                per_set[spec] = metrics.summary()
                print(format_summary(f"{name} on {spec}", per_set[spec]))
            pooled = metrics if pooled is None else pooled.merge(metrics)
        summary = pooled.summary()
        if per_set:
            summary["per_set"] = per_set
        out[name] = summary
        print(format_summary(f"{name}, {len(datasets)} sets pooled" if per_set else name, summary))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
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


def _live_config(args: argparse.Namespace, config: PipelineConfig, cfg_file: str | None):
    """The ``live:`` section with the command line laid over it (relative log_dir from the config file)."""
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


def build_camera_node(args: argparse.Namespace, record_latencies: bool = False):
    """Everything ``perception camera`` and ``perception soak`` run: (node, http server or None).

    Outputs are opened before the model loads, so a port in use or an unwritable folder fails at once.
    """
    from perception.live.capture import LatestFrameCapture
    from perception.live.http import PreviewRenderer, StatusServer
    from perception.live.node import CameraNode, NodeSettings
    from perception.live.transports import UdpOutput, ZmqOutput, parse_host_port
    from perception.pipeline import build_pipeline
    from perception.sinks import RotatingJsonlSink
    from perception.sources import OpenCVGrabber, parse_camera_source

    config, cfg_file = _pipeline_config(args)
    live = _live_config(args, config, cfg_file)
    spec = parse_camera_source(args.source, realtime=args.realtime, loop=args.loop)
    outputs: list = []
    server = None
    preview = None
    try:
        if live.http is not None:
            host, port = parse_host_port(live.http, what="--http")
            preview = PreviewRenderer(
                fps=live.preview_fps, quality=live.preview_quality, alpha=config.output.overlay_alpha
            )
            server = StatusServer(host, port, health=lambda: {"state": "starting", "healthy": False}, preview=preview)
        if live.udp is not None:
            outputs.append(UdpOutput(*parse_host_port(live.udp, what="--udp")))
        if live.zmq is not None:
            outputs.append(ZmqOutput(live.zmq, topic=live.zmq_topic))
        if live.log_dir is not None:
            outputs.append(RotatingJsonlSink(live.log_dir, int(live.log_max_mb * 2**20), live.log_keep))
        if live.ros2:
            from perception.live.ros2 import Ros2Output

            outputs.append(
                Ros2Output(
                    live.ros2_node,
                    live.ros2_detections_topic,
                    live.ros2_mask_topic,
                    live.ros2_scene_topic,
                    live.ros2_frame_id,
                )
            )
        pipeline = build_pipeline(config, cfg_file)
    except BaseException:
        for out in outputs:
            out.close()
        if server is not None:
            server.close()
        elif preview is not None:
            preview.close()
        raise
    capture = LatestFrameCapture(
        lambda: OpenCVGrabber(spec),
        name=spec.name,
        lossless=spec.is_file and not spec.realtime,
        stall_timeout_s=live.stall_timeout_s,
        reconnect_initial_s=live.reconnect_initial_s,
        reconnect_max_s=live.reconnect_max_s,
        give_up_after=1 if spec.is_file else None,  # a file that cannot be opened will not start to open
    )
    node = CameraNode(
        capture,
        pipeline,
        outputs,
        NodeSettings(max_age_s=live.max_age_ms / 1e3, watchdog_s=live.watchdog_s),
        preview=preview,
        model_name=pipeline.contract.name,
    )
    if server is not None:
        server.health = node.health
    log.info(
        "camera %s (%s%s); model %s (%s); outputs: %s",
        spec.name,
        spec.kind,
        ", real time" if spec.is_file and spec.realtime else "",
        pipeline.contract.name,
        pipeline.backend.description,
        ", ".join([o.name for o in outputs] + ([server.url] if server else []))
        or "none (add --http, --udp, --zmq or --log-dir)",
    )
    return node, server


def _stop_on_signals(stop) -> None:
    """SIGINT and SIGTERM (docker stop, systemd) set ``stop``: the loop ends, outputs are flushed."""
    import signal

    def handler(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_camera(args: argparse.Namespace) -> int:
    import threading

    from perception.runner import configure_host_threads

    configure_host_threads()
    node, server = build_camera_node(args)
    stop = threading.Event()
    _stop_on_signals(stop)
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


def cmd_soak(args: argparse.Namespace) -> int:
    import threading

    from perception.live.soak import soak
    from perception.runner import configure_host_threads

    configure_host_threads()
    args.realtime, args.loop = True, True
    args.duration, args.max_frames = None, None
    node, server = build_camera_node(args)
    stop = threading.Event()
    _stop_on_signals(stop)
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


def cmd_fleet_run(args: argparse.Namespace) -> int:
    from perception.fleet.inputs import gather_inputs
    from perception.fleet.run import run_fleet

    config, cfg_file = _pipeline_config(args)
    inputs = gather_inputs(args.inputs)
    log.info("fleet: %d drive(s) → %s on %d worker(s)", len(inputs), args.out, args.workers)
    summary = run_fleet(
        inputs,
        args.out,
        config,
        cfg_file,
        workers=args.workers,
        range_frames=args.range_frames,
        batch=args.batch,
        address=args.address,
        write_video=args.video,
        progress=not args.quiet,
        threads=args.threads or 1,
    )
    print(summary.format())
    print(f"wrote {Path(args.out) / 'fleet_summary.json'} and one folder per drive", file=sys.stderr)
    return 1 if summary.failed or summary.totals()["drives_with_problems"] else 0


def cmd_fleet_scale(args: argparse.Namespace) -> int:
    """The same inputs with 1 worker, then N: frames/s and the scaling efficiency."""
    import shutil

    from perception.fleet.inputs import gather_inputs
    from perception.fleet.run import run_fleet, start_ray

    config, cfg_file = _pipeline_config(args)
    inputs = gather_inputs(args.inputs)
    rows = []
    try:
        counts = sorted({int(x) for x in args.workers.split(",")})
    except ValueError:
        raise ConfigError(f"--workers '{args.workers}': expected comma-separated counts, e.g. 1,2") from None
    start_ray(args.address, max(counts))  # one cluster with room for the largest pool
    for n in counts:
        out = Path(args.out) / f"workers_{n}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh run: nothing reused from an earlier one
        s = run_fleet(
            inputs,
            out,
            config,
            cfg_file,
            workers=n,
            range_frames=args.range_frames,
            batch=args.batch,
            address=args.address,
            progress=False,
            threads=args.threads or 1,
        )
        t = s.totals()
        rows.append((n, t["frames"], s.wall_s, t["frames_per_s"]))
        log.info("%d worker(s): %d frames in %.1f s, %.1f frames/s", n, t["frames"], s.wall_s, t["frames_per_s"])
    base = rows[0][3] / rows[0][0]
    lines = [
        "workers  frames  wall s  frames/s  speed-up  efficiency",
        "-------  ------  ------  --------  --------  ----------",
    ]
    for n, frames, wall, fps in rows:
        lines.append(
            f"{n:<7}  {frames:<6}  {wall:<6.1f}  {fps:<8.1f}  {fps / rows[0][3]:<8.2f}  {fps / (n * base):.0%}"
        )
    lines.append("efficiency: frames/s ÷ (workers × frames/s of one worker); every worker reserves one CPU")
    print("\n".join(lines))
    return 0


def cmd_fleet_eval(args: argparse.Namespace) -> int:
    from perception.data.registry import parse_data_spec
    from perception.eval.evaluate import format_table
    from perception.eval.report import nan_to_null
    from perception.fleet.evaluate import fleet_evaluate
    from perception.paths import ensure_writable_dir

    kind, root = parse_data_spec(args.data)
    try:
        result = fleet_evaluate(
            args.model or "default",
            kind,
            root,
            args.split,
            class_map=args.class_map,
            workers=args.workers,
            shard_size=args.shard_size,
            address=args.address,
            score=args.score,
            max_frames=args.max_frames,
            progress=not args.quiet,
            threads=args.threads or 1,
        )
    except ValueError as err:
        raise ConfigError(f"{args.model or 'default'} on {args.data}: {err}") from err
    out = ensure_writable_dir(Path(args.out) if args.out else Path("out") / "fleet_eval" / f"{kind}_{args.split}")
    payload = {
        "model": args.model or "default",
        "data": args.data,
        "split": args.split,
        "workers": args.workers,
        "shard_size": args.shard_size,
        "metrics": result.metrics,
        "skipped": result.skipped.examples,
        "frames": result.frames,
    }
    (out / "metrics.json").write_text(json.dumps(nan_to_null(payload), indent=2) + "\n")
    results = {args.model or "default": result.metrics}
    print(format_table(results, _eval_table_keys(results)))
    print(f"wrote {out / 'metrics.json'}", file=sys.stderr)
    return 0


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
        precision=args.precision,
        max_batch=args.max_batch,
        display_score=args.display_score,
    )
    print(report)
    return 0


def _calibrate_auto(args: argparse.Namespace, name: str, made_with: str) -> int:
    """calibrate --auto VIDEO: the self-calibration over a video, saved as a camera file for reuse."""
    import shlex

    from perception.calibration import calibrate_auto, write_camera_yaml
    from perception.pipeline import build_pipeline

    if args.images or args.mounting or args.camera:
        raise ConfigError("--auto VIDEO takes no IMAGES, --mounting or --camera: it estimates the whole camera")
    config = load_config(args.config) if args.config else PipelineConfig()
    pre = dataclasses.replace(config.preprocess, camera="auto", undistort=False)
    config = dataclasses.replace(
        config, preprocess=pre, model=str(Path(args.model).resolve()) if args.model else config.model
    )
    pipeline = build_pipeline(config, args.config, media=args.auto)
    camera, state, frames = calibrate_auto(args.auto, pipeline, args.max_frames, args.lane_width_m)

    def num(v, fmt):
        return "unmeasured" if v is None else format(v, fmt)

    summary = (
        f"{state.frames_used} of {frames} frames used; pitch {num(state.pitch_deg, '.2f')} deg, yaw "
        f"{num(state.yaw_deg, '.2f')} deg, height {num(state.height_m, '.3f')} m ({state.height_source}), hfov "
        f"{state.hfov_deg:.2f} deg ({state.focal_source}), confidence {state.confidence:.2f}"
    )
    if camera is None:
        raise InputError(
            f"{args.auto}: did not calibrate ({summary}): it needs seconds of straight driving between painted "
            "lines or clear road edges"
        )
    command = f"perception calibrate --auto {shlex.quote(args.auto)} --out {shlex.quote(args.out)}"
    header = [
        f"Camera {name}: estimated from the lane lines of a video (camera: auto), not from a chessboard.",
        f"made by: {command}",
        made_with + f", model {pipeline.contract.name}",
        f"auto: {summary}",
        "ASSUMPTIONS: principal point at the image centre, no lens distortion, roll 0; focal length from "
        f"{state.focal_source}; height from {state.height_source} (see perception/fusion/self_calibration.py).",
    ]
    write_camera_yaml(dataclasses.replace(camera, name=name), args.out, header)
    print(f"wrote {args.out}: {summary}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import shlex
    from datetime import date

    import cv2

    from perception.calibration import (
        calibrate_chessboard,
        estimate_mounting,
        parse_board,
        read_video_frames,
        save_undistorted_example,
        write_camera_yaml,
        yaml_header_comment,
    )
    from perception.camera_model import load_camera

    made_with = f"on {date.today().isoformat()} with perception {__version__}, OpenCV {cv2.__version__}"
    name = Path(args.out).stem
    if args.auto:
        return _calibrate_auto(args, name, made_with)
    if args.mounting:
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
        cw, ch = camera.image_size
        u, v = est.vanishing_point
        header = [
            f"Camera {name}: intrinsics and distortion of {args.camera} scaled from {cw}x{ch} to {w}x{h}, "
            "mounting from the lane lines of a video.",
            f"made by: {command}",
            made_with,
            f"mounting: lane lines in {est.frames_used} of {est.frames_total} frames, vanishing point "
            f"({u:.1f}, {v:.1f}) px; pitch {est.pitch_deg:.2f} deg (MAD {est.pitch_mad_deg:.2f}), "
            f"yaw {est.yaw_deg:.2f} deg (MAD {est.yaw_mad_deg:.2f}), height {est.height_m:.3f} m "
            f"(MAD {est.height_mad_m:.3f}) for a {args.lane_width_m:g} m lane; roll not measured (0).",
            f"ASSUMPTION: {args.mounting} was recorded with the camera of {args.camera} (same lens, resized); "
            "if not, intrinsics and distortion are wrong and the height is off in proportion to the focal length.",
        ]
        if args.note:
            header.append(f"note: {args.note}")
        header += [f"{args.camera} says:"] + [f"  {line}" for line in yaml_header_comment(args.camera)]
        write_camera_yaml(dataclasses.replace(scaled, mounting=est.mounting(), name=name), args.out, header)
        print(f"wrote {args.out} ({w}x{h}, mounting filled in)")
        return 0

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
    w, h = result.camera.image_size
    not_found = ", ".join(Path(f).name for f in result.not_found) or "none"
    rejected = "; ".join(f"{Path(f).name} ({why})" for f, why in result.rejected) or "none"
    header = [
        f"Camera {name}: pinhole + OpenCV 5-coefficient distortion (k1, k2, p1, p2, k3) from chessboard photos.",
        f"made by: {command}",
        made_with,
        f"board {cols}x{rows} inner corners ({args.square_mm:g} mm squares; they scale the board poses, not the "
        f"intrinsics) used in {result.boards_used} of {len(result.images)} images at {w}x{h}; "
        f"RMS reprojection error {result.rms_px:.3f} px.",
        f"board not found in: {not_found}; board rejected in: {rejected}.",
        "mounting: not measured here (defaults); see `perception calibrate --mounting`.",
    ]
    if result.cropped:
        names = ", ".join(Path(f).name for f in result.cropped)
        header.insert(-1, f"cropped at the right/bottom edge to {w}x{h} (1-2 px larger): {names}.")
    write_camera_yaml(result.camera, args.out, header)
    print(f"wrote {args.out}")
    if args.example:
        # The first photo: in a calibration set it is usually the one that shows the distortion best.
        out = save_undistorted_example(result.camera, result.images[0], args.example)
        print(f"undistortion example ({Path(result.images[0]).name}): {out}")
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
    run.add_argument(
        "input",
        help="video file (mp4, avi, mkv, ...): writes annotated.mp4; or a folder of images (or one image): writes "
        "annotated/<same file name> per image",
    )
    run.add_argument("--model", help="model file (.onnx, or .pt for the torch backend); default: the shipped model")
    run.add_argument("--out", help="output folder (default: out/<input name>)")
    run.add_argument("--config", help="pipeline preset YAML (see configs/pipeline/)")
    run.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference backend")
    run.add_argument("--threads", type=int, help="inference threads (0 = one per core)")
    run.add_argument(
        "--camera",
        help="camera YAML (intrinsics, distortion, mounting): lanes in metres, distances, TTC; see calibrate",
    )
    run.add_argument("--no-fusion", action="store_true", help="no tracking, lanes or distances (boxes and masks only)")
    run.add_argument("--undistort", action="store_true", help="undistort frames with --camera")
    run.add_argument("--roi", type=_roi, help="region of interest x,y,w,h in frame pixels")
    run.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    run.add_argument(
        "--no-video", action="store_true", help="no annotated video or images: results.jsonl and summary.json only"
    )
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument("--batch", type=int, help="frames per network call (offline throughput; default 1)")
    run.set_defaults(func=cmd_run)

    live_opts = argparse.ArgumentParser(add_help=False)
    live_opts.add_argument(
        "--source",
        required=True,
        help="/dev/videoN or an index (V4L2), rtsp:// or http:// URL, a GStreamer pipeline ('... ! appsink'), "
        "or a video file",
    )
    live_opts.add_argument("--model", help="model file (.onnx, .engine, .pt); default: the shipped model")
    live_opts.add_argument("--config", help="pipeline preset YAML; its live: section configures the node")
    live_opts.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"], help="inference backend")
    live_opts.add_argument("--threads", type=int, help="inference threads (0 = one per core)")
    live_opts.add_argument("--camera", help="camera YAML: lanes in metres, distances, TTC")
    live_opts.add_argument("--no-fusion", action="store_true", help="no tracking, lanes or distances")
    live_opts.add_argument("--undistort", action="store_true", help="undistort frames with --camera")
    live_opts.add_argument("--roi", type=_roi, help="region of interest x,y,w,h in frame pixels")
    live_opts.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    live_opts.add_argument("--http", help="[HOST:]PORT for /health, /metrics, /preview.mjpg (host default 127.0.0.1)")
    live_opts.add_argument("--udp", help="HOST:PORT to send one JSON datagram per frame to")
    live_opts.add_argument("--zmq", help="ZeroMQ PUB endpoint to bind, e.g. tcp://127.0.0.1:5555 (needs pyzmq)")
    live_opts.add_argument("--log-dir", help="write rotating JSONL log files here")
    live_opts.add_argument("--ros2", action="store_true", help="publish on ROS 2 topics (needs rclpy, vision_msgs)")
    live_opts.add_argument("--max-age-ms", type=float, help="skip frames older than this (default 200)")
    live_opts.set_defaults(no_video=True)

    cam = sub.add_parser(
        "camera", parents=[common, live_opts], help="live camera node: capture → pipeline → UDP/ZeroMQ/HTTP/ROS 2"
    )
    cam.add_argument("--realtime", action="store_true", help="a video file: play it at its frame rate, like a camera")
    cam.add_argument("--loop", action="store_true", help="a video file: start again at its end")
    cam.add_argument("--duration", type=float, help="stop after this many seconds")
    cam.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    cam.add_argument("--summary", help="also write the end-of-run summary as JSON to this file")
    cam.set_defaults(func=cmd_camera)

    sk = sub.add_parser(
        "soak", parents=[common, live_opts], help="run the camera node on a looping clip for N minutes; memory, latency"
    )
    sk.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    sk.add_argument("--out", default="out/soak", help="folder for soak.csv, soak.json, soak.png (default out/soak)")
    sk.add_argument("--interval-s", type=float, default=10.0, help="sample every this many seconds (default 10)")
    sk.add_argument("--warmup-s", type=float, default=30.0, help="memory baseline after this warm-up (default 30)")
    sk.add_argument("--p99-limit-ms", type=float, default=100.0, help="latency limit for the verdict (default 100)")
    sk.set_defaults(func=cmd_soak)

    fleet = sub.add_parser("fleet", parents=[common], help="many drives on a Ray cluster: run, eval, scale")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="FLEET_COMMAND")
    fleet_opts = argparse.ArgumentParser(add_help=False)
    fleet_opts.add_argument(
        "--address", help="Ray cluster to join (auto, ray://host:10001); default: start a local one"
    )
    fleet_opts.add_argument(
        "--threads", type=int, help="inference threads per worker (default 1; each reserves one CPU)"
    )
    fleet_opts.add_argument("--model", help="model file; default: the shipped model")
    fleet_opts.add_argument("--score", type=float, help="detection score threshold (default: the model's)")
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument(
        "inputs", nargs="+", help="manifest (.csv with a path column, .jsonl), glob, path or fsspec URL"
    )
    run_opts.add_argument("--config", help="pipeline preset YAML")
    run_opts.add_argument("--camera", help="camera YAML: lanes in metres, distances, TTC")
    run_opts.add_argument("--no-fusion", action="store_true", help="no tracking, lanes or distances")
    run_opts.add_argument("--range-frames", type=int, default=100, help="frames per task (default 100)")
    run_opts.add_argument("--batch", type=int, default=4, help="frames per network call (default 4)")
    run_opts.set_defaults(backend=None, undistort=False, roi=None, no_video=True)
    fr = fleet_sub.add_parser(
        "run", parents=[common, fleet_opts, run_opts], help="process drives: results per drive + fleet summary"
    )
    fr.add_argument("--out", required=True, help="output folder: <id>/results.jsonl, summary.json; fleet_summary.json")
    fr.add_argument("--workers", type=int, default=2, help="Ray actors, one model each (default 2)")
    fr.add_argument("--video", action="store_true", help="also write each drive's annotated video")
    fr.set_defaults(func=cmd_fleet_run)
    fs = fleet_sub.add_parser("scale", parents=[common, fleet_opts, run_opts], help="throughput with 1 vs N workers")
    fs.add_argument("--out", default="out/fleet_scale", help="scratch folder for the runs (default out/fleet_scale)")
    fs.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated (default 1,2)")
    fs.set_defaults(func=cmd_fleet_scale)
    fe = fleet_sub.add_parser("eval", parents=[common, fleet_opts], help="perception eval, sharded over workers")
    fe.add_argument("--data", required=True, help="dataset KIND:PATH, as for perception eval (e.g. synthetic:DIR)")
    fe.add_argument("--split", default="val", help="dataset split (default val)")
    fe.add_argument("--class-map", help="class map YAML for the dataset")
    fe.add_argument("--workers", type=int, default=2, help="Ray actors, one model each (default 2)")
    fe.add_argument("--shard-size", type=int, default=50, help="samples per task (default 50)")
    fe.add_argument("--max-frames", type=int, help="evaluate only the first N samples")
    fe.add_argument("--out", help="folder for metrics.json (default out/fleet_eval/<kind>_<split>)")
    fe.set_defaults(func=cmd_fleet_eval)

    tr = sub.add_parser("train", parents=[common], help="train a network from a YAML config (torchrun for DDP)")
    tr.add_argument("config", help="training config YAML (see configs/train/)")
    tr.add_argument("--resume", action="store_true", help="continue from <out>/last.pt after a stop or kill")
    tr.add_argument("--out", help="run folder (default: the config's 'out')")
    tr.add_argument("--epochs", type=int, help="override the number of epochs")
    tr.add_argument("--device", help="cpu, cuda, cuda:N (default: the config's; auto = cuda when available)")
    tr.add_argument(
        "--budget-min",
        type=float,
        help="stop cleanly after this many minutes of wall time (last.pt saved; continue with --resume)",
    )
    tr.set_defaults(func=cmd_train)

    ex = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX / INT8 / TensorRT and check it")
    ex.add_argument("checkpoint", help="training checkpoint (.pt)")
    ex.add_argument("--out", required=True, help="file to write (.onnx, or .engine for tensorrt)")
    ex.add_argument(
        "--format",
        choices=["onnx", "onnx-raw", "onnx-int8", "tensorrt"],
        default="onnx",
        help="onnx: fused (NMS in the graph); onnx-raw: NMS on the host; onnx-int8: fused + static INT8 "
        "(needs --calib); tensorrt: engine with EfficientNMS (needs an NVIDIA GPU)",
    )
    ex.add_argument(
        "--frame-size",
        type=parse_size,
        metavar="WxH",
        help="whole-frame variant for a fixed camera: the graph letterboxes WxH frames itself",
    )
    ex.add_argument("--calib", help="INT8 calibration frames: dataset spec (camvid:DIR), video or image folder")
    ex.add_argument("--calib-frames", type=int, default=300, help="frames for INT8 calibration (default 300)")
    ex.add_argument(
        "--calib-method", choices=["percentile", "minmax", "entropy"], default="percentile", help="INT8 ranges"
    )
    ex.add_argument("--precision", choices=["fp16", "int8", "fp32"], default="fp16", help="TensorRT precision")
    ex.add_argument("--max-batch", type=int, default=8, help="largest batch of the TensorRT engine's profile")
    ex.add_argument("--score", type=float, default=0.25, help="score threshold baked into the in-graph NMS")
    ex.add_argument(
        "--display-score",
        type=float,
        help="the host's default score threshold, when --score is low to keep the whole ranking for mAP "
        "(runs show boxes above it; eval scores the whole ranking)",
    )
    ex.add_argument("--name", help="model name in the contract (default: the checkpoint's)")
    ex.add_argument("--check-frames", help="image folder or video for the ONNX-vs-PyTorch check (default: noise)")
    ex.set_defaults(func=cmd_export)

    se = sub.add_parser(
        "scene-eval", parents=[common], help="score fusion (lanes, offset, distance, TTC, tracking) on synthetic clips"
    )
    se.add_argument(
        "--data",
        required=True,
        action="append",
        help="synthetic:DIR made by `perception synth --clips K`; repeatable: each set is reported, then all pooled",
    )
    se.add_argument("--split", default="clips", help="split holding the clips (default clips)")
    se.add_argument(
        "--model", action="append", help="oracle (true masks and boxes), default, or a model file; repeatable"
    )
    se.add_argument("--max-clips", type=int, help="stop after this many clips")
    se.add_argument(
        "--camera",
        choices=("truth", "auto"),
        default="truth",
        help="truth: fusion gets each clip's true camera (default); auto: it calibrates itself from the lanes",
    )
    se.add_argument(
        "--score-after", type=float, default=0.0, help="score only frames this many seconds into each clip (default 0)"
    )
    se.add_argument("--json", help="also write the metrics to this JSON file")
    se.set_defaults(func=cmd_scene_eval)

    be = sub.add_parser("bench", parents=[common], help="per-stage timings and frames/s, side by side with the peers")
    be.add_argument("input", help="video (or image folder) to run over, e.g. ../shared/data/clips/solidWhiteRight.mp4")
    be.add_argument("--model", action="append", help="model file; repeat to compare (default: the shipped model)")
    be.add_argument("--mode", choices=["offline", "live"], default="offline", help="throughput or per-frame latency")
    be.add_argument("--runs", type=int, default=5, help="timed passes over the video per model (default 5)")
    be.add_argument("--batch", type=int, default=4, help="frames per network call in offline mode (default 4)")
    be.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    be.add_argument("--peers", action="store_true", help="also run the peer stack (TwinLiteNet + NanoDet-m)")
    be.add_argument("--video", action="store_true", help="also draw and encode the annotated video")
    be.add_argument("--max-frames", type=int, help="frames per pass (default: the whole video)")
    be.add_argument("--json", help="also write the numbers to this JSON file")
    be.add_argument("--camera", help="camera YAML: fusion also fits lanes and distances (else it only tracks)")
    be.set_defaults(func=cmd_bench)

    inspect = sub.add_parser("inspect", parents=[common], help="print a model's contract after checking it")
    inspect.add_argument("model")
    inspect.add_argument("--time", type=int, metavar="N", help="also time the network forward: median of N runs")
    inspect.add_argument("--threads", type=int, help="inference threads for --time (0 = one per core)")
    inspect.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    inspect.set_defaults(func=cmd_inspect)

    synth = sub.add_parser("synth", parents=[common], help="render a synthetic driving dataset with exact labels")
    synth.add_argument("--n", type=int, default=200, help="independent frames (default 200)")
    synth.add_argument("--out", required=True, help="output folder (images, masks, COCO JSON, YOLO txt)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same dataset (default 0)")
    synth.add_argument("--size", type=parse_size, default=(640, 360), help="WIDTHxHEIGHT (default 640x360)")
    synth.add_argument("--val", type=float, default=0.1, help="fraction of frames in the val split (default 0.1)")
    synth.add_argument("--clips", type=int, default=0, help="temporally coherent clips to add (default 0)")
    synth.add_argument("--clip-frames", type=int, help="frames per clip (default 60; 20 with --format tusimple)")
    synth.add_argument(
        "--format",
        choices=("folder", "tusimple"),
        default="folder",
        help="folder: the perception folder layout (default); tusimple: clips/<clip>/<n>.jpg + label_data.json "
        "(TuSimple lanes; needs --clips)",
    )
    synth.add_argument(
        "--label-frames",
        choices=("last", "all"),
        default="last",
        help="--format tusimple: label the last frame of each clip, as TuSimple (default), or every frame",
    )
    synth.add_argument("--fps", type=float, default=10.0, help="clip frame rate (default 10)")
    synth.add_argument("--density", type=float, default=1.0, help="traffic and clutter multiplier (default 1)")
    synth.add_argument("--night", type=float, default=0.15, help="probability of a night frame (default 0.15)")
    synth.add_argument("--weather", type=float, default=0.2, help="probability of rain or fog (default 0.2)")
    synth.add_argument("--workers", type=int, default=0, help="rendering processes (default: one per core)")
    synth.add_argument("--markings", choices=("any", "us"), default="any", help="us: every road US-marked")
    synth.add_argument(
        "--centred-principal-point", action="store_true", help="cameras with the principal point at the image centre"
    )
    for flag, key, default in (
        ("--hfov", "hfov_deg", "50,75"),
        ("--height", "height_m", "1.15,1.7"),
        ("--pitch", "pitch_deg", "-0.5,4"),
        ("--yaw", "yaw_deg", "normal, sigma 1"),
        ("--roll", "roll_deg", "normal, sigma 0.7"),
    ):
        synth.add_argument(
            flag, dest=key, type=parse_range, help=f"camera {key}: LO,HI drawn uniformly (default {default})"
        )
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    synth.set_defaults(func=cmd_synth)

    ev = sub.add_parser("eval", parents=[common], help="score models on a labelled dataset (IoU, Dice, mAP)")
    ev.add_argument(
        "--model",
        action="append",
        help="model file, 'default', a peer: peer:twinlitenet, peer:nanodet, peer:stack, or a COCO teacher: "
        "teacher:yolox, teacher:picodet, teacher:yolofastest, teacher:ensemble, each optionally +tta (repeatable)",
    )
    ev.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models side by side with the difference")
    ev.add_argument("--data", required=True, help="KIND:PATH, e.g. camvid:../shared/data/camvid")
    ev.add_argument("--split", default="val")
    ev.add_argument("--class-map", help="class-map YAML (default: configs/datasets/<kind>.yaml)")
    ev.add_argument("--out", help="output folder (default: out/eval/<kind>_<split>)")
    ev.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    ev.add_argument("--score", type=float, help="host-side detection score threshold (default: the model's)")
    ev.add_argument("--max-frames", type=int, help="evaluate only the first N samples")
    ev.add_argument("--config", help="tusimple data: pipeline preset YAML for the pipeline and scene fusion")
    ev.add_argument("--camera", help="tusimple data: camera YAML for the scene fusion (default: the preset's)")
    ev.set_defaults(func=cmd_eval)

    ag = sub.add_parser(
        "agreement", parents=[common], help="on unlabelled video: recall of the objects the COCO teachers agree on"
    )
    ag.add_argument("video", help="video file")
    ag.add_argument("--model", action="append", help="model file or 'default' (repeatable)")
    ag.add_argument("--teachers", default="yolox,picodet,yolofastest", help="comma-separated teacher names")
    ag.add_argument("--min-score", type=float, default=0.5, help="teacher boxes below this score do not count")
    ag.add_argument("--min-agree", type=int, default=2, help="teachers that must box an object (default 2)")
    ag.add_argument("--iou", type=float, default=0.5, help="IoU at which a detection finds an object")
    ag.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    ag.add_argument("--max-frames", type=int, help="only the first N frames")
    ag.add_argument("--out", help="output folder (default: out/agreement)")
    ag.set_defaults(func=cmd_agreement)

    lab = sub.add_parser(
        "label", parents=[common], help="label frames with the COCO teachers (WBF) into a perception folder dataset"
    )
    lab.add_argument(
        "--teachers", default="yolox,picodet,yolofastest", help="comma-separated: yolox, picodet, yolofastest"
    )
    lab.add_argument(
        "--data", required=True, help="KIND:PATH (e.g. camvid:../shared/data/camvid), video:PATH or images:DIR"
    )
    lab.add_argument("--split", default="train", help="dataset split to read, and the split written (default train)")
    lab.add_argument("--out", required=True, help="output folder (perception folder layout)")
    lab.add_argument("--tta", action="store_true", help="test-time augmentation per teacher (flip + 1.6x tiles)")
    lab.add_argument("--lanes", metavar="NAME", help="lane labels from a lane teacher: twinlitenetplus")
    lab.add_argument(
        "--camvid-boxes",
        choices=["component", "teacher", "both"],
        help="camvid: mask-component boxes only (default), split by teacher instances, or both",
    )
    lab.add_argument(
        "--lane-autolabel",
        action="store_true",
        help="camvid: paint found by the lane auto-labeller (docs/autolabel.md) written as lane positives",
    )
    lab.add_argument("--every", type=int, default=1, metavar="K", help="every K-th frame (default 1)")
    lab.add_argument("--positive-score", type=float, default=0.4, help="fused score for a box label (default 0.4)")
    lab.add_argument("--ignore-score", type=float, default=0.15, help="fused score for an ignore box (default 0.15)")
    lab.add_argument("--class-map", help="class-map YAML for KIND:PATH data (default: configs/datasets/<kind>.yaml)")
    lab.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    lab.set_defaults(func=cmd_label)

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

    cal = sub.add_parser(
        "calibrate",
        parents=[common],
        help="camera intrinsics from chessboard photos, or the mounting (pitch, yaw, height) from a video",
        description="perception calibrate IMAGES... --board 9x6 --out camera.yaml  |  "
        "perception calibrate --mounting VIDEO --camera camera.yaml --out mounted.yaml",
    )
    cal.add_argument("images", nargs="*", metavar="IMAGES", help="chessboard photos: files, folders or globs")
    cal.add_argument("--out", required=True, help="camera YAML to write")
    cal.add_argument(
        "--board",
        default="9x6",
        metavar="COLSxROWS",
        help="inner corners, columns x rows (a board of 10x7 squares is 9x6; default 9x6)",
    )
    cal.add_argument("--square-mm", type=float, default=25.0, help="side of one square in mm (default 25)")
    cal.add_argument("--example", metavar="PNG", help="also write the first photo beside its undistorted version")
    cal.add_argument("--mounting", metavar="VIDEO", help="estimate pitch, yaw and height from this video's lane lines")
    cal.add_argument(
        "--auto",
        metavar="VIDEO",
        help="estimate the whole camera (focal length, pitch, yaw, height) from a video, as camera: auto does",
    )
    cal.add_argument("--model", help="with --auto: model whose lane masks are used (default: the shipped model)")
    cal.add_argument("--config", help="with --auto: pipeline preset (YAML)")
    cal.add_argument("--max-frames", type=int, help="with --auto: stop after this many frames")
    cal.add_argument("--camera", help="with --mounting: the calibrated camera YAML (scaled to the video's size)")
    cal.add_argument(
        "--lane-width-m",
        type=float,
        help="ego lane width (default: 3.7, US highway, with --mounting; 3.6, camera: auto's prior, with --auto)",
    )
    cal.add_argument("--frames", type=int, default=100, help="frames spread over the video to use (default 100)")
    cal.add_argument("--note", help="a remark for the YAML's header comment (e.g. where the video comes from)")
    cal.set_defaults(func=cmd_calibrate)
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
