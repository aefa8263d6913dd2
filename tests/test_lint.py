"""Lint and format checks run with the tests, so CI catches them (ruff comes with the `dev` extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff not installed (pip install '.[dev]')")
    return [exe]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    proc = subprocess.run(_ruff() + args, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_path_does_not_import_torch():
    """The vehicle install has no torch: running a model end to end must not import it."""
    code = (
        "import sys, numpy as np\n"
        "from perception.cli import build_parser\n"
        "from perception.pipeline import build_pipeline\n"
        "from perception.runner import run_source\n"
        "from perception.config import PipelineConfig\n"
        "p = build_pipeline(PipelineConfig())\n"
        "from perception.frames import Frame\n"
        "p(Frame(0, 0.0, np.zeros((540, 960, 3), np.uint8)))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
