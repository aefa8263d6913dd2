"""Datasets → augmented, letterboxed training batches.

``TrainSet`` concatenates any number of ``perception.data`` datasets (each with a repeat factor, so a
small real set can be weighted against a large synthetic one) and runs the augmentation; ``collate``
pads the boxes and turns a list of samples into images uint8 [B, H, W, 3] BGR plus ``Targets``. The
network's input adapter (cast, colour swap, normalisation) runs inside the model, as in the export.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from perception.data.augment import Augment
from perception.data.base import Dataset
from perception.data.sample import IGNORE, Sample
from perception.train.losses import Targets


class TrainSet(torch.utils.data.Dataset):
    """Concatenation of datasets with integer repeat factors, augmented per item.

    Args:
        datasets: perception datasets (same class lists).
        repeats: per dataset, how many times each sample appears per epoch (>= 1).
        augment: the ``Augment`` (train or val mode) applied to every sample.
        seed: base seed; item i of epoch e is augmented with seed (seed, e, i), so runs are reproducible and
            every epoch sees new augmentations (``set_epoch``).
    """

    def __init__(self, datasets: Sequence[Dataset], repeats: Sequence[int], augment: Augment, seed: int = 0):
        if len(datasets) != len(repeats):
            raise ValueError(f"{len(datasets)} datasets but {len(repeats)} repeat factors")
        self.datasets = list(datasets)
        self.index: list[tuple[int, int]] = []
        for d, (ds, r) in enumerate(zip(datasets, repeats, strict=True)):
            if r < 1:
                raise ValueError(f"repeat factor must be >= 1, got {r} for {ds.root}")
            self.index += [(d, i) for _ in range(r) for i in range(len(ds))]
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Sample:
        d, j = self.index[i]
        sample = self.datasets[d][j]
        seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1, np.uint64)[0] >> 1)
        return self.augment(sample, rng_seed=seed)


def collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, Targets]:
    """Samples of equal size → (images uint8 [B, H, W, 3] BGR, Targets); boxes padded to the batch max."""
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    b = len(samples)
    h, w = samples[0].image.shape[:2]
    seg = np.full((b, h, w), IGNORE, np.uint8)
    has_seg = np.zeros(b, bool)
    lane = np.zeros(b, bool)
    has_boxes = np.zeros(b, bool)
    m = max([len(s.boxes) for s in samples if s.boxes is not None] + [1])
    boxes = np.zeros((b, m, 4), np.float32)
    labels = np.zeros((b, m), np.int64)
    valid = np.zeros((b, m), bool)
    ignore = np.zeros((b, m), bool)
    for k, s in enumerate(samples):
        if s.seg is not None:
            seg[k], has_seg[k] = s.seg, True
            lane[k] = s.lane_labelled
        if s.boxes is not None:
            has_boxes[k] = True
            n = len(s.boxes)
            boxes[k, :n], labels[k, :n], valid[k, :n], ignore[k, :n] = s.boxes, s.labels, True, s.ignore
    targets = Targets(
        seg=torch.from_numpy(seg).long(),
        has_seg=torch.from_numpy(has_seg),
        lane_labelled=torch.from_numpy(lane),
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels),
        box_valid=torch.from_numpy(valid),
        box_ignore=torch.from_numpy(ignore),
        has_boxes=torch.from_numpy(has_boxes),
    )
    return images, targets
