"""Datasets → augmented, letterboxed training batches.

``TrainSet`` concatenates any number of ``perception.data`` datasets (each with a repeat factor, so a
small real set can be weighted against a large synthetic one) and runs the augmentation; ``EpochSampler``
gives each rank its share of an epoch's shuffled order from any position (resume mid-epoch without loading
the batches already trained on); ``collate`` pads the boxes and turns a list of samples into images uint8
[B, H, W, 3] BGR plus ``Targets``. The network's input adapter (cast, colour swap, normalisation) runs
inside the model, as in the export.
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
            every epoch sees new augmentations.

    Items are looked up by ``(epoch, i)`` keys (what ``EpochSampler`` yields): the epoch travels with the
    index, so DataLoader workers, which hold their own copy of the dataset from the epoch they started in,
    augment with the right epoch. A plain index ``i`` uses the epoch of ``set_epoch``.
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

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        epoch, i = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        d, j = self.index[i]
        sample = self.datasets[d][j]
        seed = int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1, np.uint64)[0] >> 1)
        return self.augment(sample, rng_seed=seed)


class EpochSampler(torch.utils.data.Sampler):
    """One rank's share of an epoch's shuffled order, as ``(epoch, index)`` keys, from any position.

    The order of epoch e is ``torch.randperm(n)`` under a generator seeded with ``seed + e``: on one process
    the order of ``RandomSampler`` with that generator, on ``world`` ranks the split of
    ``DistributedSampler(shuffle=True, drop_last=True)``: the permutation cut to a multiple of ``world``,
    rank r taking every ``world``-th index from r. ``set_epoch(e, start)`` skips the first ``start`` of this
    rank's indices without touching the data, so a run resumed after b batches passes
    ``start = b * batch_size`` and every rank continues where it stopped.

    Args:
        n: dataset length.
        seed: base seed of the per-epoch permutations.
        rank, world: this process's rank and the number of ranks.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        self.n, self.seed, self.rank, self.world = int(n), int(seed), int(rank), int(world)
        self.num_samples = self.n // self.world  # per rank, the tail that does not split evenly dropped
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from position ``start`` (0 <= start <= num_samples) of this rank's order."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} is outside this rank's {self.num_samples} samples")
        self.epoch, self.start = int(epoch), int(start)

    def order(self) -> list[int]:
        """This rank's dataset indices for the current epoch, in order, from the beginning of the epoch."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        return perm[: self.num_samples * self.world][self.rank :: self.world]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.order()[self.start :]])

    def __len__(self) -> int:
        return self.num_samples - self.start


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
