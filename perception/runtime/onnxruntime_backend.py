"""ONNX Runtime backend: TensorRT EP → CUDA EP → CPU, whichever this install and machine provide."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import ModelError
from perception.runtime.base import Backend
from perception.runtime.contract import METADATA_KEY, ModelContract, check_model_io

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

_ORT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(double)": "float64",
    "tensor(bool)": "bool",
}


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``preferred`` into (usable in preference order, missing from this install).

    CPU is always appended last as the fallback every ONNX Runtime build has.
    """
    usable = [p for p in preferred if p in available]
    missing = [p for p in preferred if p not in available]
    if "CPUExecutionProvider" not in usable:
        usable.append("CPUExecutionProvider")
    return usable, missing


def _provider_options(name: str, cache_dir: Path | None) -> dict[str, Any]:
    if name == "TensorrtExecutionProvider" and cache_dir is not None:
        # Engine building takes minutes; cache engines and timing next to each other and reuse them.
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
            "trt_fp16_enable": True,
        }
    return {}


class OnnxRuntimeBackend(Backend):
    """Loads an ONNX model with its ``perception.contract`` and checks its I/O against it.

    Args:
        path: the .onnx file.
        providers: execution providers in order of preference.
        threads: intra-op threads (0 = ONNX Runtime's default, one per core).
        trt_cache_dir: where the TensorRT EP caches engines (None = ~/.cache/perception/trt).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int = 0,
        trt_cache_dir: str | os.PathLike | None = None,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        with open(self.path, "rb") as f:
            head = f.read(64)
        if not head:
            raise ModelError(f"{self.path}: model file is empty")

        usable, missing = choose_providers(providers, ort.get_available_providers())
        if missing:
            log.info("%s: execution providers not in this onnxruntime build: %s", self.path.name, ", ".join(missing))
        cache = Path(trt_cache_dir) if trt_cache_dir else Path.home() / ".cache" / "perception" / "trt"
        if "TensorrtExecutionProvider" in usable:
            cache.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        self.threads = int(threads) or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT workers would otherwise busy-wait and starve the decode and writer threads that share
        # these few cores with inference.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: ORT's own warnings would drown our one-line messages
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                sess_options=options,
                providers=[(p, _provider_options(p, cache)) for p in usable],
            )
        except Exception as err:  # ORT raises its own exception types per failure; all mean "can't load"
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            if "protobuf" in text.lower() or "INVALID_PROTOBUF" in text:
                raise ModelError(f"{self.path}: not an ONNX model (ONNX Runtime: {text})") from err
            raise ModelError(f"{self.path}: ONNX Runtime cannot load this model: {text}") from err

        active = self.session.get_providers()
        if usable and active and active[0] != usable[0]:
            log.warning("%s: %s could not start; fell back to %s", self.path.name, usable[0], active[0])
        self.providers = list(active)
        self.description = f"onnxruntime {ort.__version__} {active[0] if active else '?'}"
        log.info("%s: running on %s", self.path.name, ", ".join(active))

        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(
                f"{self.path}: no '{METADATA_KEY}' metadata; this ONNX file was not exported by `perception "
                f"export` (found metadata keys: {sorted(meta) or 'none'})"
            )
        self.contract = ModelContract.from_json(meta[METADATA_KEY], str(self.path))
        check_model_io(
            self.contract,
            [(i.name, _ORT_TYPES.get(i.type, i.type), tuple(i.shape)) for i in self.session.get_inputs()],
            [(o.name, _ORT_TYPES.get(o.type, o.type), tuple(o.shape)) for o in self.session.get_outputs()],
            str(self.path),
        )
        self._output_names = [name for name, _, _ in self.contract.expected_outputs()]

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.check_images(images)
        outputs = self.session.run(self._output_names, {self.contract.input_name: images})
        return dict(zip(self._output_names, outputs, strict=True))
