"""One labelled sample, as every dataset in ``perception.data`` yields it.

Class ids follow the project's class lists (configurable, defaults below): segmentation ids index
``seg_classes`` with ``IGNORE`` (255) for pixels no metric or loss may use; detection labels index
``det_classes``. A label that was never annotated is ``None``, which is not the same as "annotated and
empty" (an empty box array): training treats the first as missing supervision, the second as "no
objects here".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.errors import InputError

SEG_CLASSES: tuple[str, ...] = ("background", "drivable", "lane")
DET_CLASSES: tuple[str, ...] = ("car", "pedestrian", "cyclist", "traffic_sign")
IGNORE = 255  # segmentation value excluded from every metric and loss


class DatasetError(InputError):
    """A dataset file is missing, unreadable or carries a label that cannot be mapped; names the file."""


@dataclass(frozen=True, eq=False)
class Sample:
    """An image with whatever labels its dataset has.

    Attributes:
        image: uint8 [H, W, 3], BGR (as OpenCV reads it).
        name: identifier unique within the dataset (e.g. the image path relative to the dataset root).
        seg: uint8 [H, W] segmentation class ids (``IGNORE`` = not labelled), or None when the dataset
            has no masks for this image.
        lane_labelled: True when lane paint has its own class in ``seg``; False when paint is merged into
            the road class (CamVid), so lane supervision must be treated as missing on this sample.
        boxes: float32 [N, 4] x1, y1, x2, y2 in image pixels (x2, y2 exclusive edges), or None when the
            dataset has no boxes for this image.
        labels: int64 [N] detection class ids; None exactly when ``boxes`` is None.
        ignore: bool [N], True for boxes that are crowd, "difficult" or heavily occluded: evaluation
            neither rewards nor penalises detections on them. None exactly when ``boxes`` is None.
        meta: free-form extras (source path, lane polylines, camera parameters, track ids, ...).
    """

    image: np.ndarray
    name: str
    seg: np.ndarray | None = None
    lane_labelled: bool = False
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    ignore: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
            raise ValueError(f"{self.name}: image must be uint8 [H, W, 3], got {_describe(img)}")
        h, w = img.shape[:2]
        if self.seg is not None:
            seg = self.seg
            if not (isinstance(seg, np.ndarray) and seg.dtype == np.uint8 and seg.shape == (h, w)):
                raise ValueError(f"{self.name}: seg must be uint8 [{h}, {w}] like the image, got {_describe(seg)}")
        if (self.boxes is None) != (self.labels is None):
            raise ValueError(f"{self.name}: boxes and labels must both be given or both be None")
        if self.boxes is not None:
            boxes = np.asarray(self.boxes)
            n = len(boxes)
            if boxes.dtype != np.float32 or boxes.shape != (n, 4):
                raise ValueError(f"{self.name}: boxes must be float32 [N, 4], got {_describe(boxes)}")
            if self.labels.dtype != np.int64 or self.labels.shape != (n,):
                raise ValueError(f"{self.name}: labels must be int64 [{n}], got {_describe(self.labels)}")
            ignore = np.zeros(n, bool) if self.ignore is None else self.ignore
            if ignore.dtype != np.bool_ or ignore.shape != (n,):
                raise ValueError(f"{self.name}: ignore must be bool [{n}], got {_describe(ignore)}")
            object.__setattr__(self, "ignore", ignore)
        elif self.ignore is not None:
            raise ValueError(f"{self.name}: ignore given without boxes")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]

    @property
    def has_seg(self) -> bool:
        return self.seg is not None

    @property
    def has_boxes(self) -> bool:
        return self.boxes is not None


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} {list(a.shape)}"
    return type(a).__name__
