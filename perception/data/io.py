"""File readers shared by every dataset loader: images, label masks, JSON, image listings.

Every reader raises ``DatasetError`` with a one-line message that starts with the file's path and says
what is wrong with it (missing, empty, undecodable, truncated, wrong channels or bit depth, invalid JSON),
so a bad file is either an error or a counted skip (``perception.data.base.iter_samples``), never a silently
wrong sample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.data.sample import DatasetError

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
# Markers without a length field: TEM and RST0..RST7.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])


def list_images(
    folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES, recursive: bool = True
) -> list[Path]:
    """Image files in ``folder``, sorted, by suffix (case-insensitive); hidden files and folders are skipped.

    Args:
        folder: the folder to list (a missing folder gives an empty list).
        suffixes: lower-case suffixes with the dot, e.g. (".png",); default ``IMAGE_SUFFIXES``.
        recursive: also list sub-folders (their files sort by their path).
    Returns:
        Paths ``folder / relative path``, sorted.
    """
    wanted = tuple(s.lower() for s in suffixes)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for f in filenames:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in wanted:
                found.append(Path(dirpath) / f)
    return sorted(found)


def _read_bytes(path: Path, what: str, not_found: str) -> np.ndarray:
    """The file's bytes as uint8 [N]; DatasetError naming it when missing, unreadable or 0 bytes."""
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: {not_found}") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read {what} ({err.strerror or err})") from err
    if data.size == 0:
        raise DatasetError(f"{path}: {what} file is empty (0 bytes)")
    return data


def jpeg_reaches_end(data: np.ndarray) -> bool:
    """Whether a JPEG's bytes (uint8 [N], starting with the SOI marker FFD8) reach its end-of-image marker FFD9.

    Walks the marker segments by their length fields, so an FFD9 inside metadata (an EXIF thumbnail) does not
    count, and skips each scan's entropy-coded data to the next marker (inside it FF is always followed by 00
    or a restart marker). Bytes after the end-of-image marker (appended trailers) are allowed. When the
    segment structure is malformed it falls back to "an FFD9 comes after the last start-of-scan FFDA".
    """
    buf = data.tobytes()
    n = len(buf)
    markers = None  # positions of FF that start a marker other than RSTn; computed on the first scan
    pos = 2
    while pos + 1 < n:
        if buf[pos] != 0xFF:
            return buf.rfind(b"\xff\xd9") > buf.rfind(b"\xff\xda")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            return True
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if pos + 3 >= n:
            return False
        end = pos + 2 + (buf[pos + 2] << 8 | buf[pos + 3])
        if end > n:
            return False
        if marker != _SOS:
            pos = end
            continue
        if markers is None:
            ff = np.flatnonzero(data[:-1] == 0xFF)
            nxt = data[ff + 1]
            markers = ff[(nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))]
        i = int(np.searchsorted(markers, end))
        if i == len(markers):
            return False
        pos = int(markers[i])
    return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3] BGR (grey and 4-channel files are converted).

    Raises DatasetError naming the file when it is missing, unreadable, empty (0 bytes), not decodable
    (corrupt, not an image), or a JPEG that stops before its end-of-image marker (a truncated download):
    OpenCV 4.x decodes such a file to its top part with grey below and only prints a warning.
    """
    path = Path(path)
    data = _read_bytes(path, "image", "cannot read image (file not found)")
    if data.size >= 2 and data[0] == 0xFF and data[1] == _SOI and not jpeg_reaches_end(data):
        raise DatasetError(f"{path}: JPEG is truncated (no end-of-image marker after the image data)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    return image


def read_label(path: str | os.PathLike, dtypes: Sequence[type] = (np.uint8,)) -> np.ndarray:
    """A one-channel label image (class ids, instance ids, bit fields), pixel values unchanged.

    Args:
        path: the label file (PNG in every supported dataset).
        dtypes: accepted pixel dtypes, e.g. (np.uint8,) for class masks, (np.uint16,) for Cityscapes
            instanceIds.
    Returns:
        [H, W] array of one of ``dtypes``.
    Raises:
        DatasetError naming the file when it is missing, unreadable, empty, undecodable, has colour
        channels (a colour-coded or palette-expanded mask) or another bit depth than ``dtypes``.
    """
    path = Path(path)
    mask = cv2.imdecode(_read_bytes(path, "label image", "label image not found"), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetError(f"{path}: cannot decode label image (corrupt, truncated or not an image)")
    if mask.ndim != 2:
        raise DatasetError(
            f"{path}: expected a one-channel label image, got {mask.shape[2]} channels (a colour-coded mask?)"
        )
    if mask.dtype not in dtypes:
        expected = " or ".join(np.dtype(d).name for d in dtypes)
        raise DatasetError(f"{path}: expected {expected} label values, got {mask.dtype}")
    return mask


def check_same_size(
    mask: np.ndarray, mask_path: str | os.PathLike, image: np.ndarray, image_path: str | os.PathLike
) -> None:
    """DatasetError naming both files and sizes (width x height) when a label [H, W] and its image [H, W, 3]
    differ in height or width."""
    if mask.shape[:2] != image.shape[:2]:
        mh, mw = mask.shape[:2]
        ih, iw = image.shape[:2]
        raise DatasetError(f"{mask_path}: label is {mw}x{mh} but its image {image_path} is {iw}x{ih}")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file (UTF-8) to Python values; DatasetError naming it when missing, unreadable, empty
    (0 bytes or only whitespace) or not valid JSON."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from err
    if not data.strip():
        raise DatasetError(f"{path}: file is empty")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
