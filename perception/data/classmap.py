"""Class mapping from a dataset's own labels to the project's classes, read from YAML (configs/datasets/).

Schema (every key but ``seg``/``det`` optional)::

    seg_classes: [background, drivable, lane]            # the class lists ids refer to
    det_classes: [car, pedestrian, cyclist, traffic_sign]
    seg:
      values: {3: drivable, 11: ignore}   # source mask value -> class name, or "ignore"
      default: background                 # for values not listed; leave out to make them an error
      lane_labelled: false                # does the mask give lane paint its own class?
    det:
      classes: {car: car, person: pedestrian, 8: car}   # source class name or id -> class name
      unmapped: drop                      # source classes not listed: drop, or error

A mask value or box class that the map does not cover is an error naming the file (``DatasetError``)
unless ``default`` / ``unmapped: drop`` says what to do with it: never a silent wrong label.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from perception.data.sample import DET_CLASSES, IGNORE, SEG_CLASSES, DatasetError
from perception.errors import ConfigError

# Built-in class maps: configs/datasets/ of this checkout, else the copy `pip install .` puts in share/.
CLASS_MAP_DIRS = (
    Path(__file__).resolve().parents[2] / "configs" / "datasets",
    Path(sys.prefix) / "share" / "perception" / "configs" / "datasets",
)


@dataclass(frozen=True)
class ClassMap:
    """Source labels -> project class ids.

    Attributes:
        seg_values: source mask value (0-255) -> project seg id or IGNORE.
        seg_default: id for mask values not in ``seg_values``; None makes them an error.
        lane_labelled: whether mapped masks give lane paint its own class.
        det_classes_map: source class (str name or int id) -> project det id.
        det_unmapped: "drop" or "error" for source classes not in ``det_classes_map``.
    """

    seg_classes: tuple[str, ...] = SEG_CLASSES
    det_classes: tuple[str, ...] = DET_CLASSES
    seg_values: tuple[tuple[int, int], ...] = ()
    seg_default: int | None = None
    lane_labelled: bool = True
    det_classes_map: tuple[tuple[str | int, int], ...] = ()
    det_unmapped: str = "drop"
    source: str = "<builtin>"

    def __post_init__(self) -> None:
        lut = np.full(256, -1, np.int32)
        for value, cid in self.seg_values:
            lut[value] = cid
        if self.seg_default is not None:
            lut[lut < 0] = self.seg_default
        object.__setattr__(self, "_lut", lut)
        object.__setattr__(self, "_det", dict(self.det_classes_map))

    def map_seg(self, mask: np.ndarray, file: str) -> np.ndarray:
        """uint8 [H, W] source values -> uint8 [H, W] project ids (IGNORE kept as 255). Never mutates ``mask``.

        Raises DatasetError naming ``file`` and the offending values when a value has no mapping.
        """
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise DatasetError(f"{file}: mask must be one-channel 8-bit, got {mask.dtype} {list(mask.shape)}")
        mapped = self._lut[mask]
        if (mapped < 0).any():
            bad = sorted(int(v) for v in np.unique(mask[mapped < 0]))
            raise DatasetError(
                f"{file}: mask values {bad[:10]} are not in the class map {self.source} "
                "(add them under seg.values, or set seg.default)"
            )
        return mapped.astype(np.uint8)

    def map_det(self, source_class: str | int, file: str) -> int | None:
        """Project det id for a source class, None to drop it; DatasetError when unmapped and strict."""
        cid = self._det.get(source_class)
        if cid is None and self.det_unmapped == "error":
            raise DatasetError(f"{file}: box class {source_class!r} is not in the class map {self.source}")
        return cid

    @property
    def det_source_classes(self) -> list[str | int]:
        return list(self._det)

    def det_label_values(self) -> dict[int, int]:
        """``det.classes`` of a map whose keys are mask label values -> {label value (int 0..65535): det id}.

        For datasets whose boxes come from label or instance masks (CamVid, Cityscapes). Raises ConfigError
        naming the class map when a key is not an integer 0..65535 (e.g. a class name).
        """
        values: dict[int, int] = {}
        for source, cid in self.det_classes_map:
            if isinstance(source, bool) or not isinstance(source, int) or not 0 <= source <= 65535:
                raise ConfigError(
                    f"{self.source}: det.classes key {source!r} must be a label value (an integer) for this dataset"
                )
            values[source] = cid
        return values


def class_map_from_dict(data: dict, source: str = "<dict>") -> ClassMap:
    """Build a ClassMap from the YAML schema in the module docstring; ConfigError names source and key."""

    def fail(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {msg}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = set(data) - {"kind", "seg_classes", "det_classes", "seg", "det", "description"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (valid: kind, seg_classes, det_classes, seg, det, description)")
    seg_classes = tuple(data.get("seg_classes", SEG_CLASSES))
    det_classes = tuple(data.get("det_classes", DET_CLASSES))

    def seg_id(name, key: str) -> int:
        if name == "ignore":
            return IGNORE
        if name not in seg_classes:
            raise fail(key, f"{name!r} is not a segmentation class (valid: {[*seg_classes, 'ignore']})")
        return seg_classes.index(name)

    seg = data.get("seg") or {}
    if not isinstance(seg, dict) or set(seg) - {"values", "default", "lane_labelled"}:
        raise fail("seg", "expected a mapping with keys values, default, lane_labelled")
    seg_values = []
    for value, name in (seg.get("values") or {}).items():
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise fail(f"seg.values.{value}", "mask values must be integers 0..255")
        seg_values.append((value, seg_id(name, f"seg.values.{value}")))
    default = seg.get("default")
    seg_default = None if default is None else seg_id(default, "seg.default")
    lane_labelled = seg.get("lane_labelled", "lane" in seg_classes)
    if not isinstance(lane_labelled, bool):
        raise fail("seg.lane_labelled", f"expected true or false, got {lane_labelled!r}")

    det = data.get("det") or {}
    if not isinstance(det, dict) or set(det) - {"classes", "unmapped"}:
        raise fail("det", "expected a mapping with keys classes, unmapped")
    det_map = []
    for src, name in (det.get("classes") or {}).items():
        if name not in det_classes:
            raise fail(f"det.classes.{src}", f"{name!r} is not a detection class (valid: {list(det_classes)})")
        det_map.append((src, det_classes.index(name)))
    unmapped = det.get("unmapped", "drop")
    if unmapped not in ("drop", "error"):
        raise fail("det.unmapped", f"expected drop or error, got {unmapped!r}")
    return ClassMap(
        seg_classes=seg_classes,
        det_classes=det_classes,
        seg_values=tuple(seg_values),
        seg_default=seg_default,
        lane_labelled=lane_labelled,
        det_classes_map=tuple(det_map),
        det_unmapped=unmapped,
        source=source,
    )


def load_class_map(path: str | os.PathLike) -> ClassMap:
    """Read a class-map YAML; a bare name (``camvid``) means the built-in ``configs/datasets/<name>.yaml``."""
    p = Path(path)
    if not p.suffix and not p.exists():
        found = [d / f"{p.name}.yaml" for d in CLASS_MAP_DIRS if (d / f"{p.name}.yaml").is_file()]
        p = found[0] if found else CLASS_MAP_DIRS[0] / f"{p.name}.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError(f"{p}: cannot read class map ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({err})") from err
    return class_map_from_dict(data, str(p))
