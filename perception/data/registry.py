"""Dataset kinds by name, and the ``kind:path`` spec the command line uses.

Each kind names the module and class of its loader; the module is imported only when the kind is built,
so listing the kinds imports nothing. Every loader takes
``(root, split="train", class_map=None, bad_boxes="error", **kind_specific_kwargs)``.
"""

from __future__ import annotations

import importlib
import os

from perception.data.base import Dataset
from perception.data.classmap import ClassMap, load_class_map
from perception.errors import ConfigError

DATASET_KINDS: dict[str, tuple[str, str]] = {
    "camvid": ("perception.data.camvid", "CamVidDataset"),
    "cityscapes": ("perception.data.cityscapes", "CityscapesDataset"),
    "bdd100k": ("perception.data.bdd100k", "Bdd100kDataset"),
    "coco": ("perception.data.coco", "CocoDataset"),
    "yolo": ("perception.data.yolo", "YoloDataset"),
    "synthetic": ("perception.data.folder", "FolderDataset"),
    "tusimple": ("perception.data.tusimple", "TusimpleDataset"),
}

SPEC_EXAMPLE = "camvid:../shared/data/camvid"


def dataset_class(kind: str) -> type[Dataset]:
    """The loader class of ``kind``; ConfigError listing the valid kinds when it is unknown."""
    if kind not in DATASET_KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r} (valid: {sorted(DATASET_KINDS)})")
    module_name, class_name = DATASET_KINDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ConfigError(f"dataset kind {kind!r} is not available in this install ({module_name} is missing)") from err
    return getattr(module, class_name)


def build_dataset(
    kind: str,
    root: str | os.PathLike,
    split: str = "train",
    class_map: ClassMap | str | os.PathLike | None = None,
    bad_boxes: str = "error",
    **kwargs,
) -> Dataset:
    """Build a dataset of ``kind`` at ``root``.

    Args:
        class_map: a ClassMap, a class-map YAML path (or bare name under configs/datasets/), or None for
            the kind's default ``configs/datasets/<kind>.yaml``.
        bad_boxes: "error" or "drop" for boxes with no area inside their image.
        kwargs: kind-specific options (e.g. ``min_area`` for camvid/cityscapes).
    Raises:
        ConfigError for an unknown kind or class map; DatasetError when the files are missing.
    """
    cls = dataset_class(kind)
    if class_map is not None and not isinstance(class_map, ClassMap):
        class_map = load_class_map(class_map)
    return cls(root, split=split, class_map=class_map, bad_boxes=bad_boxes, **kwargs)


def parse_data_spec(spec: str) -> tuple[str, str]:
    """``"camvid:../shared/data/camvid"`` -> ``("camvid", "../shared/data/camvid")``.

    Raises ConfigError when the spec has no ``kind:`` prefix (with an example), names an unknown kind
    (listing the valid ones) or has an empty path.
    """
    kind, sep, path = spec.partition(":")
    if not sep or not kind or "/" in kind or "\\" in kind:
        raise ConfigError(
            f"dataset spec {spec!r} has no kind prefix: write KIND:PATH, e.g. {SPEC_EXAMPLE} "
            f"(kinds: {sorted(DATASET_KINDS)})"
        )
    if kind not in DATASET_KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r} in {spec!r} (valid: {sorted(DATASET_KINDS)})")
    if not path:
        raise ConfigError(f"dataset spec {spec!r} has no path after {kind}:, e.g. {SPEC_EXAMPLE}")
    return kind, path
