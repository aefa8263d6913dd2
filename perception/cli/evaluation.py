"""``perception eval`` (models scored on labelled data: IoU, Dice, mAP, TuSimple lanes), ``perception scene-eval``
(fusion against the synthetic world's truth) and ``perception agreement`` (recall of what the COCO teachers
agree on in unlabelled video). The scoring and the reports are ``perception.eval``'s."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from perception.errors import ConfigError


def add_scene_eval(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "scene-eval", parents=[common], help="score fusion (lanes, offset, distance, TTC, tracking) on synthetic clips"
    )
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="synthetic:DIR made by `perception synth --clips K`; repeatable: each set is reported, then all pooled",
    )
    p.add_argument("--split", default="clips", help="split holding the clips (default clips)")
    p.add_argument(
        "--model", action="append", help="oracle (true masks and boxes), default, or a model file; repeatable"
    )
    p.add_argument("--max-clips", type=int, help="stop after this many clips")
    p.add_argument(
        "--camera",
        choices=("truth", "auto", "auto-hfov"),
        default="truth",
        help="truth: fusion gets each clip's true camera (default); auto: it calibrates itself from the lanes; "
        "auto-hfov: the same, told each clip's true field of view (as --hfov tells perception run)",
    )
    p.add_argument(
        "--score-after", type=float, default=0.0, help="score only frames this many seconds into each clip (default 0)"
    )
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_scene_eval)


def cmd_scene_eval(args: argparse.Namespace) -> int:
    """Fusion against the synthetic world's truth (lanes, offset, distances, TTC, tracking)."""
    from perception.data.registry import build_dataset, parse_data_spec
    from perception.eval.scene import evaluate_scene_sets

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
    out = evaluate_scene_sets(
        datasets,
        args.model or ["oracle"],
        camera=args.camera,
        max_clips=args.max_clips,
        score_after_s=args.score_after,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def add_eval(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="score models on a labelled dataset (IoU, Dice, mAP)")
    p.add_argument(
        "--model",
        action="append",
        help="model file, 'default', a peer: peer:twinlitenet, peer:nanodet, peer:stack, or a COCO teacher: "
        "teacher:yolox, teacher:picodet, teacher:yolofastest, teacher:ensemble, each optionally +tta (repeatable)",
    )
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models side by side with the difference")
    p.add_argument("--data", required=True, help="KIND:PATH, e.g. camvid:../shared/data/camvid")
    p.add_argument("--split", default="val")
    p.add_argument("--class-map", help="class-map YAML (default: configs/datasets/<kind>.yaml)")
    p.add_argument("--out", help="output folder (default: out/eval/<kind>_<split>)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    p.add_argument("--score", type=float, help="host-side detection score threshold (default: the model's)")
    p.add_argument("--max-frames", type=int, help="evaluate only the first N samples")
    p.add_argument("--config", help="tusimple data: pipeline preset YAML for the pipeline and scene fusion")
    p.add_argument("--camera", help="tusimple data: camera YAML for the scene fusion (default: the preset's)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.registry import build_dataset, parse_data_spec
    from perception.eval.evaluate import format_table
    from perception.eval.report import eval_table_keys
    from perception.paths import ensure_writable_dir

    cv2.setNumThreads(1)
    models = list(args.compare) if args.compare else (args.model or ["default"])
    kind, root = parse_data_spec(args.data)
    dataset = build_dataset(kind, root, split=args.split, class_map=args.class_map)
    out = Path(args.out) if args.out else Path("out") / "eval" / f"{kind}_{args.split}"
    ensure_writable_dir(out)
    run = dict(threads=args.threads, score=args.score, max_frames=args.max_frames, progress=not args.quiet)
    if kind == "tusimple":
        from perception.config import PipelineConfig, load_config
        from perception.eval.scoring import score_tusimple_models

        # The pipeline and scene fusion of ``perception run``, its lanes scored in TuSimple's format.
        config = load_config(args.config) if args.config else PipelineConfig()
        if args.camera:  # a camera file (resolved here), or a keyword the preset also takes
            camera = str(Path(args.camera).resolve()) if Path(args.camera).is_file() else args.camera
            config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, camera=camera))
        results, report = score_tusimple_models(models, dataset, args.data, args.split, out, config, args.config, **run)
    else:
        from perception.eval.scoring import score_models

        results, report = score_models(models, dataset, args.data, args.split, out, **run)
    print(format_table(results, eval_table_keys(results)))
    print(f"report: {report}")
    return 0


def add_agreement(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "agreement", parents=[common], help="on unlabelled video: recall of the objects the COCO teachers agree on"
    )
    p.add_argument("video", help="video file")
    p.add_argument("--model", action="append", help="model file or 'default' (repeatable)")
    p.add_argument("--teachers", default="yolox,picodet,yolofastest", help="comma-separated teacher names")
    p.add_argument("--min-score", type=float, default=0.5, help="teacher boxes below this score do not count")
    p.add_argument("--min-agree", type=int, default=2, help="teachers that must box an object (default 2)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU at which a detection finds an object")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = one per core)")
    p.add_argument("--max-frames", type=int, help="only the first N frames")
    p.add_argument("--out", help="output folder (default: out/agreement)")
    p.set_defaults(func=cmd_agreement)


def cmd_agreement(args: argparse.Namespace) -> int:
    import cv2

    from perception.data.sample import DET_CLASSES
    from perception.eval.agreement import format_agreement, video_agreement
    from perception.eval.predictors import build_predictor
    from perception.eval.report import nan_to_null
    from perception.paths import ensure_writable_dir
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
        counts = video_agreement(
            predictor,
            ensemble,
            args.video,
            DET_CLASSES,
            args.min_agree,
            args.iou,
            max_frames=args.max_frames,
            progress=not args.quiet,
            unit=f"frames ({spec})",
        )
        results[spec] = counts.metrics()
    print(format_agreement(results, DET_CLASSES, names, args.min_agree, args.min_score, args.iou))
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
