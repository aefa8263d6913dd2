"""TensorRT backend: runs a serialized engine (``.engine``/``.plan``) built by ``export.tensorrt_build``.

Why not only ONNX Runtime's TensorRT execution provider: the vehicle computers run TensorRT without ONNX
Runtime, and an engine built once offline (FP16 or INT8, NMS by the ``EfficientNMS_TRT`` plugin) starts
in milliseconds instead of rebuilding on the first frame. The engine speaks the fused contract: ``images``
uint8 [N, H, W, 3] in, ``seg``, ``dets``, ``num_dets`` out.

An engine file has no metadata field, so its contract lives next to it in ``<engine>.contract.json``
(written by ``build_engine``); the backend refuses an engine without one, and checks the engine's real
I/O tensors against it like the ONNX Runtime backend does.

Device memory, copies and the stream use cuda-python's runtime bindings (``cuda.bindings.runtime``,
``cuda.cudart`` before cuda-python 12.6): a thin, dependency-free wrapper over libcudart, where
PyTorch would pull a 2 GB wheel onto a vehicle computer. tensorrt and cuda-python are imported only
when this backend is built, so the CPU runtime never imports them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import ModelError
from perception.runtime.base import Backend
from perception.runtime.contract import IOSpec, ModelContract, check_model_io

TRT_MISSING = "tensorrt is not installed (pip install '.[tensorrt]' on a machine with an NVIDIA GPU)"
CUDA_PYTHON_MISSING = "cuda-python is not installed (pip install '.[tensorrt]' on a machine with an NVIDIA GPU)"


def contract_path_for(engine_path: str | os.PathLike) -> Path:
    """The sidecar contract of an engine: ``<engine>.contract.json``."""
    return Path(f"{engine_path}.contract.json")


def read_engine_contract(engine_path: str | os.PathLike) -> ModelContract:
    """Parse the sidecar contract of ``engine_path``; ModelError naming the file when it is missing."""
    sidecar = contract_path_for(engine_path)
    if not sidecar.is_file():
        raise ModelError(
            f"{engine_path}: no contract file {sidecar.name} next to the engine; build engines with "
            f"perception.export.tensorrt_build.build_engine, which writes it"
        )
    return ModelContract.from_json(sidecar.read_text(encoding="utf-8"), str(sidecar))


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, version 10 or later; ModelError with the install hint otherwise."""
    try:
        import tensorrt as trt
    except ImportError as err:  # also OSError-like failures of libnvinfer surface as ImportError
        raise ModelError(TRT_MISSING) from err
    if int(trt.__version__.split(".")[0]) < 10:
        raise ModelError(f"tensorrt {trt.__version__} is too old: this code uses the TensorRT 10 API")
    return trt


class Cuda:
    """The few CUDA runtime calls the backend and the INT8 calibrator need, with errors as ModelError.

    cuda-python returns ``(error, *values)`` from every call instead of raising; ``_call`` turns a
    failure into one line naming the call and CUDA's own message.
    """

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime
        except ImportError:
            try:
                from cuda import cudart as runtime  # cuda-python < 12.6
            except ImportError as err:
                raise ModelError(CUDA_PYTHON_MISSING) from err
        self.rt = runtime
        try:
            count = self._call(runtime.cudaGetDeviceCount(), "cudaGetDeviceCount")
        except ModelError as err:
            raise ModelError(f"no usable NVIDIA GPU for TensorRT ({err})") from err
        if count == 0:
            raise ModelError("no CUDA device found: TensorRT needs an NVIDIA GPU")
        if not 0 <= device < count:
            raise ModelError(f"CUDA device {device} does not exist ({count} found)")
        self._call(runtime.cudaSetDevice(device), "cudaSetDevice")
        props = self._call(runtime.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        self.device_name = props.name.split(b"\0", 1)[0].decode(errors="replace")

    def _call(self, result: tuple, what: str) -> Any:
        err, *values = result
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err)
            raise ModelError(f"CUDA {what} failed: {text.decode(errors='replace')}")
        return values[0] if len(values) == 1 else None

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr), "cudaFree")

    def stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def to_device(self, ptr: int, host: np.ndarray, stream: Any = 0) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def to_host(self, host: np.ndarray, ptr: int, stream: Any = 0) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: Any = 0) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def tensorrt_available(device: int = 0) -> tuple[bool, str]:
    """(True, "tensorrt 10.x on <GPU>") when engines can be built and run here, else (False, why)."""
    try:
        trt = import_tensorrt()
        cuda = Cuda(device)
    except ModelError as err:
        return False, str(err)
    return True, f"tensorrt {trt.__version__} on {cuda.device_name}"


def _numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    return np.dtype(trt.nptype(dtype))


class TensorRTBackend(Backend):
    """Runs a TensorRT engine that speaks the fused contract.

    Args:
        path: the ``.engine``/``.plan`` file; its contract is read from ``<path>.contract.json``.
        device: CUDA device index.
        threads: accepted for a uniform backend interface; TensorRT runs on the GPU and ignores it.

    Buffers for the engine's largest batch (its optimisation profile's max) are allocated once; a larger
    batch raises ValueError naming the limit, since the engine cannot run it at all.
    """

    def __init__(self, path: str | os.PathLike, device: int = 0, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self.contract = read_engine_contract(self.path)
        if self.contract.format != "fused":
            raise ModelError(
                f"{self.path}: TensorRT engines speak the fused contract, sidecar says {self.contract.format}"
            )
        trt = import_tensorrt()
        self._cuda = Cuda(device)
        self._trt = trt
        self._buffers: dict[str, int] = {}
        self._stream = None
        logger = trt.Logger(trt.Logger.ERROR)
        # The EfficientNMS plugin must be registered before an engine that uses it is deserialised.
        trt.init_libnvinfer_plugins(logger, "")
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelError(
                f"{self.path}: TensorRT {trt.__version__} cannot deserialise this engine (engines only run on the "
                f"TensorRT version and GPU model they were built with; rebuild it on this machine)"
            )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [self._spec(n) for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [self._spec(n) for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        check_model_io(self.contract, inputs, outputs, str(self.path))
        self._input = self.contract.input_name
        self._outputs = [name for name, _, _ in self.contract.expected_outputs()]
        self.max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])
        self._context = self._engine.create_execution_context()
        self._stream = self._cuda.stream()
        for name in [self._input, *self._outputs]:
            shape = (self.max_batch, *tuple(self._engine.get_tensor_shape(name))[1:])
            nbytes = int(np.prod(shape)) * _numpy_dtype(trt, self._engine.get_tensor_dtype(name)).itemsize
            self._buffers[name] = self._cuda.malloc(nbytes)
            self._context.set_tensor_address(name, self._buffers[name])
        precision = self.contract.extra.get("tensorrt", {}).get("precision", "?").upper()
        self.threads = int(threads)
        self.description = f"tensorrt {trt.__version__} {precision} on {self._cuda.device_name}"

    def _spec(self, name: str) -> IOSpec:
        # TensorRT marks dynamic dimensions -1; the contract check wants them as names.
        shape = tuple("N" if d < 0 else int(d) for d in self._engine.get_tensor_shape(name))
        return name, str(_numpy_dtype(self._trt, self._engine.get_tensor_dtype(name))), shape

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.check_images(images)
        n = images.shape[0]
        if n > self.max_batch:
            raise ValueError(f"batch of {n} images exceeds this engine's maximum batch {self.max_batch}; rebuild it")
        images = np.ascontiguousarray(images)
        if not self._context.set_input_shape(self._input, images.shape):
            raise ModelError(f"{self.path}: TensorRT refused input shape {list(images.shape)}")
        self._cuda.to_device(self._buffers[self._input], images, self._stream)
        if not self._context.execute_async_v3(int(self._stream)):
            raise ModelError(f"{self.path}: TensorRT execution failed")
        out = {}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            out[name] = np.empty(shape, _numpy_dtype(self._trt, self._engine.get_tensor_dtype(name)))
            self._cuda.to_host(out[name], self._buffers[name], self._stream)
        self._cuda.sync(self._stream)
        return out

    def close(self) -> None:
        for ptr in self._buffers.values():
            self._cuda.free(ptr)
        self._buffers.clear()
        if self._stream is not None:
            self._cuda.destroy_stream(self._stream)
            self._stream = None
