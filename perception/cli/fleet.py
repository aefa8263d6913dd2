"""``perception fleet run|scale|eval``: many drives on a Ray cluster (``perception.fleet``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from perception.cli.options import add_hfov_option, pipeline_config
from perception.errors import ConfigError

log = logging.getLogger("perception")


def add_fleet(sub, common: argparse.ArgumentParser) -> None:
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
    add_hfov_option(run_opts)
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


def cmd_fleet_run(args: argparse.Namespace) -> int:
    from perception.fleet.inputs import gather_inputs
    from perception.fleet.run import run_fleet

    config, cfg_file = pipeline_config(args)
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
    from perception.fleet.inputs import gather_inputs
    from perception.fleet.run import fleet_scaling, format_scaling

    config, cfg_file = pipeline_config(args)
    inputs = gather_inputs(args.inputs)
    try:
        counts = sorted({int(x) for x in args.workers.split(",")})
    except ValueError:
        raise ConfigError(f"--workers '{args.workers}': expected comma-separated counts, e.g. 1,2") from None
    rows = fleet_scaling(
        inputs,
        args.out,
        config,
        cfg_file,
        counts,
        range_frames=args.range_frames,
        batch=args.batch,
        address=args.address,
        threads=args.threads or 1,
    )
    print(format_scaling(rows))
    return 0


def cmd_fleet_eval(args: argparse.Namespace) -> int:
    from perception.data.registry import parse_data_spec
    from perception.eval.evaluate import format_table
    from perception.eval.report import eval_table_keys, metrics_payload, write_metrics_json
    from perception.fleet.evaluate import fleet_evaluate
    from perception.paths import ensure_writable_dir

    model = args.model or "default"
    kind, root = parse_data_spec(args.data)
    try:
        result = fleet_evaluate(
            model,
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
        raise ConfigError(f"{model} on {args.data}: {err}") from err
    out = ensure_writable_dir(Path(args.out) if args.out else Path("out") / "fleet_eval" / f"{kind}_{args.split}")
    setup = {"workers": args.workers, "shard_size": args.shard_size}
    path = write_metrics_json(out, metrics_payload(model, args.data, args.split, result, setup=setup))
    results = {model: result.metrics}
    print(format_table(results, eval_table_keys(results)))
    print(f"wrote {path}", file=sys.stderr)
    return 0
