"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from perception.runtime.contract import ModelContract


class Backend(ABC):
    """Runs a model on a batch of letterboxed frames.

    Attributes:
        contract: what the model takes and returns; ``contract.format`` says whether ``infer`` returns
            fused (seg, dets, num_dets) or raw (seg, cls_s*, box_s*) outputs.
        description: one line for logs and summaries, e.g. "onnxruntime CPUExecutionProvider".
    """

    contract: ModelContract
    description: str

    @abstractmethod
    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images uint8 [N, H, W, 3] (contract colour order, H, W = contract.graph_input_size) → outputs by name.

        Output names, dtypes and shapes are those of ``contract.expected_outputs()``.
        """

    def check_images(self, images: np.ndarray) -> None:
        """Raise ValueError unless ``images`` is uint8 [N, H, W, 3] at the size the graph takes."""
        h, w = self.contract.graph_input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"images must be uint8 [N, {h}, {w}, 3], got {images.dtype} {list(images.shape)}")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory or sessions; the default has nothing to release."""
