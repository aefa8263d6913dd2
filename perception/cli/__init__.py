"""The ``perception`` command.

Errors a user can act on (``PerceptionError``) print one line naming the file and the problem and exit
non-zero; ``--debug`` adds the traceback. Exit codes: 0 done, 1 error or a problem with the input (the
summary says which), 2 bad command line, 130 interrupted.

One module per group of commands, each adding its subcommands' parsers next to their handlers:
``run.py`` (run, bench, inspect), ``live.py`` (camera, soak), ``fleet.py``, ``train.py`` (train, export),
``evaluation.py`` (eval, scene-eval, agreement), ``data.py`` (synth, label, data), ``calibrate.py``;
``options.py`` holds what several share. Handlers import the library when they run, so ``perception --help``
stays quick and a command never loads what another one needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from perception import __version__
from perception.cli import calibrate, data, evaluation, fleet, live, run, train
from perception.errors import PerceptionError

# The subcommands in the order ``perception --help`` lists them.
COMMANDS = (
    run.add_run,
    live.add_camera,
    live.add_soak,
    fleet.add_fleet,
    train.add_train,
    train.add_export,
    evaluation.add_scene_eval,
    run.add_bench,
    run.add_inspect,
    data.add_synth,
    evaluation.add_eval,
    evaluation.add_agreement,
    data.add_label,
    data.add_data,
    calibrate.add_calibrate,
)


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
    for add in COMMANDS:
        add(sub, common)
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
