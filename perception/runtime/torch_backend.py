"""PyTorch backend for checkpoints not yet exported (needs the `train` extra).

The checkpoint is a ``torch.save`` dict with keys ``contract`` (the model contract dict), ``arch`` and
``arch_kwargs`` (see ``perception.nets.build_net``) and ``state_dict``. The network runs inside the same
contract graph the exporter uses, returning the ``raw`` outputs; the host decodes and runs NMS.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception.errors import ModelError
from perception.runtime.base import Backend
from perception.runtime.contract import ModelContract

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """Args: path to a checkpoint (.pt); device "cpu", "cuda" or "cuda:N"; threads for CPU (0 = default)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int = 0):
        try:
            import torch
        except ImportError as err:
            raise ModelError(f"{path}: the torch backend needs PyTorch: pip install '.[train]'") from err
        from perception.nets.checkpoints import CHECKPOINT_KEYS, build_checkpoint_net

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: checkpoint not found")
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and torch errors all mean the same thing to the user
            raise ModelError(f"{self.path}: not a PyTorch checkpoint ({type(err).__name__}: {err})") from err
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
            found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ModelError(f"{self.path}: checkpoint needs keys {list(CHECKPOINT_KEYS)}, found {found}")
        contract = ModelContract.from_dict(ckpt["contract"], str(self.path))
        net = build_checkpoint_net(ckpt, self.path)
        if threads:
            torch.set_num_threads(threads)
        self._setup(net, contract, device)
        log.info("%s: running on %s", self.path.name, self.description)

    @classmethod
    def from_net(cls, net, contract: ModelContract, device: str = "cpu") -> TorchBackend:
        """A backend around a network in memory (validation during training); ``net`` is not copied, and
        is left in eval mode (the caller switches it back to train)."""
        self = cls.__new__(cls)
        self.path = Path(f"<{contract.name}>")
        self._setup(net, contract, device)
        return self

    def _setup(self, net, contract: ModelContract, device: str) -> None:
        import torch

        from perception.nets.contract_graph import IMAGENET_MEAN, IMAGENET_STD, RawGraph

        self.contract = replace(contract, format="raw")  # host decoding: this backend returns raw maps
        norm = contract.extra.get("normalize", {})
        self.device = torch.device(device)
        self.graph = (
            RawGraph(net, contract.color, norm.get("mean", IMAGENET_MEAN), norm.get("std", IMAGENET_STD))
            .eval()
            .to(self.device)
        )
        self._names = [name for name, _, _ in self.contract.expected_outputs()]
        self._torch = torch
        self.description = f"torch {torch.__version__} {self.device}"

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.check_images(images)
        with self._torch.inference_mode():
            outs = self.graph(self._torch.from_numpy(np.ascontiguousarray(images)).to(self.device))
        return {name: t.cpu().numpy() for name, t in zip(self._names, outs, strict=True)}
