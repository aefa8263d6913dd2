"""Inference backends behind one interface (``Backend``), chosen by name or by the model file's suffix.

Backends are imported only when chosen, so the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from perception.runtime.base import Backend
from perception.runtime.contract import ModelContract

# name → (module, class); imported lazily.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("perception.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("perception.runtime.torch_backend", "TorchBackend"),
    "tensorrt": ("perception.runtime.tensorrt_backend", "TensorRTBackend"),
}

_SUFFIX_BACKEND = {
    ".onnx": "onnxruntime",
    ".pt": "torch",
    ".pth": "torch",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend name a model file's suffix implies ("auto" resolution)."""
    suffix = Path(path).suffix.lower()
    return _SUFFIX_BACKEND.get(suffix, "onnxruntime")


def build_backend(name: str, path: str | os.PathLike, **kwargs: Any) -> Backend:
    """Create backend ``name`` ("auto" picks by file suffix) for the model at ``path``.

    kwargs go to the backend's constructor. An unknown name raises ValueError listing the valid ones.
    """
    if name == "auto":
        name = backend_for_path(path)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid names: {['auto', *sorted(BACKENDS)]}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(path, **kwargs)


__all__ = ["Backend", "ModelContract", "BACKENDS", "build_backend", "backend_for_path"]
