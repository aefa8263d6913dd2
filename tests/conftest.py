"""Shared fixtures: tiny random-weight models that satisfy the contract, and small generated videos.

Models use a small input (128x224) so every test that runs one stays fast; the real clip tests read
../shared/data and skip with a message when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PERCEPTION_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL_CLIP = SHARED_DATA / "clips" / "solidWhiteRight.mp4"
TEST_INPUT_SIZE = (128, 224)


def require_real_clip() -> Path:
    if not REAL_CLIP.is_file():
        pytest.skip(f"real clip not found at {REAL_CLIP} (set PERCEPTION_SHARED_DATA)")
    return REAL_CLIP


def write_video(
    path: Path, n: int = 12, size_wh: tuple[int, int] = (192, 108), fourcc: str = "mp4v", fps: float = 10.0
) -> Path:
    """A synthetic clip: a grey road trapezoid and a moving box, frame i carries its index as brightness."""
    w, h = size_wh
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        writer.write(synthetic_frame(i, w, h))
    writer.release()
    return path


def synthetic_frame(i: int, w: int = 192, h: int = 108) -> np.ndarray:
    img = np.full((h, w, 3), (200, 170, 120), np.uint8)  # sky-ish
    road = np.array([[w * 0.45, h * 0.5], [w * 0.55, h * 0.5], [w, h], [0, h]], np.int32)
    cv2.fillPoly(img, [road], (90, 90, 90))
    x = int((i * 7) % max(w - 30, 1))
    cv2.rectangle(img, (x, int(h * 0.55)), (x + 24, int(h * 0.75)), (30, 30, 200), -1)
    return img


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def fused_model(model_dir) -> Path:
    """Fused tiny random model; cls_prior 0.3 so random weights still yield detections."""
    from perception.export.random_model import make_random_model

    return make_random_model(model_dir / "fused.onnx", input_size=TEST_INPUT_SIZE, cls_prior=0.3, seed=1)


@pytest.fixture(scope="session")
def raw_model(model_dir) -> Path:
    from perception.export.random_model import make_random_model

    return make_random_model(model_dir / "raw.onnx", format="raw", input_size=TEST_INPUT_SIZE, cls_prior=0.3, seed=1)


@pytest.fixture(scope="session")
def torch_checkpoint(model_dir) -> Path:
    from perception.export.random_model import random_net_and_contract
    from perception.nets.checkpoints import save_model_checkpoint

    net, contract, kwargs = random_net_and_contract(input_size=TEST_INPUT_SIZE, cls_prior=0.3, seed=1)
    return save_model_checkpoint(model_dir / "tiny.pt", net, contract, "tiny", kwargs)


@pytest.fixture()
def video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4")
