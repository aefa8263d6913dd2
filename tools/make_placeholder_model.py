"""Rebuild models/default.onnx: the tiny random-weight placeholder that ships until a trained model does.

    python tools/make_placeholder_model.py [--out models/default.onnx]

Needs the `train` extra (torch, onnx). Seeded: the same weights every time.
"""

from __future__ import annotations

import argparse

from perception.export.random_model import make_random_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/default.onnx")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_random_model(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
