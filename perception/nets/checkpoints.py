"""Model checkpoints: everything needed to rebuild a network and its contract, in one ``torch.save`` file.

Keys: ``contract`` (model contract dict), ``arch`` and ``arch_kwargs`` (``perception.nets.build_net``),
``state_dict``. Training adds its own state (optimizer, epoch) beside these keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from perception.errors import ModelError
from perception.runtime.contract import ModelContract

# What every model checkpoint holds (training adds its own keys beside these).
CHECKPOINT_KEYS = ("contract", "arch", "arch_kwargs", "state_dict")


def save_model_checkpoint(
    path: str | os.PathLike,
    net: nn.Module,
    contract: ModelContract,
    arch: str,
    arch_kwargs: dict[str, Any],
    **extra: Any,
) -> Path:
    """Write the checkpoint atomically (temp file + rename), so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "contract": contract.to_dict(),
            "arch": arch,
            "arch_kwargs": dict(arch_kwargs),
            "state_dict": net.state_dict(),
            **extra,
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def build_checkpoint_net(ckpt: dict[str, Any], source: str | os.PathLike) -> nn.Module:
    """The network a loaded checkpoint dict describes (``arch``, ``arch_kwargs``) with its ``state_dict``;
    ModelError naming ``source`` when they do not build or fit."""
    from perception.nets import build_net

    try:
        net = build_net(ckpt["arch"], **ckpt["arch_kwargs"])
        net.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as err:
        raise ModelError(f"{source}: checkpoint does not build its network: {err}") from err
    return net
