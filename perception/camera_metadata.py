"""Focal length from a file's own metadata: a hint for self-calibration, never a calibration.

``focal_from_metadata(path)`` reads, without reading the whole file:

- JPEG: the EXIF block (APP1 ``Exif``, a TIFF structure in either byte order). ``FocalLengthIn35mmFilm``
  (tag 0xA405) first; failing that ``FocalLength`` (0x920A) with ``FocalPlaneXResolution`` (0xA20E) and
  ``FocalPlaneResolutionUnit`` (0xA210, default inch), which give the focal length in pixels of the
  stored image. The image size comes from the SOF marker, and EXIF ``Orientation`` 5-8 (90° turns) swaps
  it, as ``cv2.imread`` turns the image.
- MP4 / MOV (ISO BMFF, QuickTime): the QuickTime metadata key
  ``com.apple.quicktime.camera.focal_length.35mm_equivalent`` (iPhones write it) in a ``meta`` atom
  (``keys`` + ``ilst``) under ``moov``, ``moov/udta`` or a track; the frame size from the video track's
  ``tkhd`` (swapped when its matrix turns the picture by 90°, as OpenCV's FFmpeg backend rotates it).

The 35 mm equivalent focal length ``f35`` is defined on the diagonal: a lens of focal length ``f35`` on
a 36 x 24 mm frame (diagonal D = sqrt(36² + 24²) = 43.27 mm) sees the same diagonal angle as the camera.
An image W x H pixels (square pixels, rectilinear lens) then has the equivalent width
``w35 = D · W / sqrt(W² + H²)`` and

    hfov = 2 · atan(w35 / (2 · f35)),   f_px = f35 · sqrt(W² + H²) / D.

For a 3:2 image ``w35`` = 36 mm exactly; for 4:3 it is 34.6 mm, for 16:9 37.7 mm. With the focal plane
resolution instead: ``f_px = FocalLength_mm · FocalPlaneXResolution / unit_mm`` and
``hfov = 2 · atan(W_stored / (2 · f_px))``.

Metadata is a hint: anything missing, malformed or absurd gives None (the reason is logged at debug
level). Only a path that is not a readable file raises ``InputError``. Runtime side: stdlib only.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from perception.errors import InputError

log = logging.getLogger(__name__)

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.267 mm: what a 35 mm equivalent focal length refers to
QUICKTIME_FOCAL_35MM_KEY = "com.apple.quicktime.camera.focal_length.35mm_equivalent"

# EXIF tags
_TAG_ORIENTATION = 0x0112
_TAG_EXIF_IFD = 0x8769
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_35MM = 0xA405
_TAG_FOCAL_PLANE_XRES = 0xA20E
_TAG_FOCAL_PLANE_UNIT = 0xA210
_TAG_PIXEL_X = 0xA002
_TAG_PIXEL_Y = 0xA003
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit: inch, cm (EXIF); mm, µm (TIFF/EP)

_MAX_SEGMENTS = 4096  # JPEG markers before the image data: more is not a real file
_MAX_ATOMS = 1 << 16  # atoms in one container (a fragmented MP4 has two per fragment at the top level)
_MAX_ATOM_READ = 1 << 20  # keys / ilst / tkhd / hdlr atoms larger than this are not metadata we trust
_MAX_DEPTH = 8
_BMFF_TOP = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"}


@dataclass(frozen=True)
class FocalHint:
    """A focal length found in a file's metadata.

    Attributes:
        hfov_deg: horizontal field of view, in degrees, of the whole frame of size ``image_size_wh`` (as
            OpenCV decodes it: EXIF orientation / track rotation applied), assuming a rectilinear lens.
        source: where it came from, e.g. ``"exif:FocalLengthIn35mmFilm"``, ``"exif:FocalLength+FocalPlaneXResolution"``,
            ``"quicktime:com.apple.quicktime.camera.focal_length.35mm_equivalent"``.
        raw_value: the value as stored: the 35 mm equivalent focal length in mm, or the true focal length in
            mm for the focal plane fallback.
        image_size_wh: width, height in pixels of the frame ``hfov_deg`` refers to.
    """

    hfov_deg: float
    source: str
    raw_value: float
    image_size_wh: tuple[int, int]

    def focal_px(self, width: int, height: int) -> float:
        """Focal length in pixels for a frame ``width`` x ``height`` of this picture (resized, or turned by
        90°): scaled by the diagonal, which neither resizing nor turning changes."""
        w0, h0 = self.image_size_wh
        f0 = (w0 / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)
        return f0 * math.hypot(width, height) / math.hypot(w0, h0)


class _Malformed(Exception):
    """The metadata is not what it claims to be (caught inside this module: the hint is None)."""


def focal_from_metadata(path: str | os.PathLike) -> FocalHint | None:
    """The focal length stored in a JPEG's EXIF or an MP4/MOV's QuickTime metadata, or None.

    None when the file is another format, carries no focal length, or its metadata is malformed.
    Raises InputError when ``path`` does not exist or cannot be opened as a file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    try:
        f = open(p, "rb")
    except OSError as err:
        raise InputError(f"{p}: cannot read ({err.strerror or err})") from err
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            f.seek(0)
            if head[:2] == b"\xff\xd8":
                return _from_jpeg(f, size)
            if len(head) >= 8 and head[4:8] in _BMFF_TOP:
                return _from_bmff(f, size)
            log.debug("%s: neither JPEG nor MP4/MOV: no focal length metadata read", p)
            return None
        except (_Malformed, struct.error, ValueError, IndexError, OverflowError, ZeroDivisionError, OSError) as err:
            log.debug("%s: metadata unreadable, no focal hint: %s", p, err)
            return None


def hfov_from_35mm(f35_mm: float, width: int, height: int) -> float:
    """Horizontal field of view (degrees) of a ``width`` x ``height`` image whose 35 mm equivalent focal
    length is ``f35_mm``: the equivalence is on the diagonal (see the module docstring)."""
    if not (f35_mm > 0 and width > 0 and height > 0 and math.isfinite(f35_mm)):
        raise ValueError(f"35 mm equivalent {f35_mm} mm on {width}x{height}: not a focal length and a size")
    w35 = FULL_FRAME_DIAGONAL_MM * width / math.hypot(width, height)
    return math.degrees(2.0 * math.atan(w35 / (2.0 * f35_mm)))


def _hfov_from_focal_px(f_px: float, width: int) -> float:
    if not (f_px > 0 and width > 0 and math.isfinite(f_px)):
        raise ValueError(f"focal length {f_px} px for a width of {width} px")
    return math.degrees(2.0 * math.atan(width / (2.0 * f_px)))


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Malformed(f"file ends {n - len(data)} bytes early at offset {f.tell()}")
    return data


# --- JPEG / EXIF -------------------------------------------------------------------------------------

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _from_jpeg(f: BinaryIO, file_size: int) -> FocalHint | None:
    """Walk the JPEG markers up to the image data: the Exif APP1 segment and the frame size (SOF)."""
    _read(f, 2)  # SOI
    exif: bytes | None = None
    size_wh: tuple[int, int] | None = None
    for _ in range(_MAX_SEGMENTS):
        byte = _read(f, 1)
        if byte != b"\xff":
            raise _Malformed(f"no JPEG marker at offset {f.tell() - 1}")
        marker = _read(f, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(f, 1)[0]
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            break
        (length,) = struct.unpack(">H", _read(f, 2))
        if length < 2:
            raise _Malformed(f"JPEG segment 0x{marker:02X} with length {length}")
        start = f.tell()
        if start + length - 2 > file_size:
            raise _Malformed(f"JPEG segment 0x{marker:02X} runs past the end of the file")
        if marker == 0xE1 and exif is None:
            body = _read(f, length - 2)
            if body.startswith(b"Exif\x00\x00"):
                exif = body[6:]
        elif marker in _SOF_MARKERS:
            _, h, w = struct.unpack(">BHH", _read(f, 5))
            size_wh = (w, h)
        f.seek(start + length - 2)
    else:
        raise _Malformed("too many JPEG segments before the image data")
    if exif is None:
        return None
    tags = _exif_tags(exif)
    orientation = int(tags.get(_TAG_ORIENTATION, 1))
    if size_wh is None or size_wh[1] == 0:  # no SOF before the scan, or a DNL height: EXIF's pixel size
        if _TAG_PIXEL_X not in tags or _TAG_PIXEL_Y not in tags:
            return None
        size_wh = (int(tags[_TAG_PIXEL_X]), int(tags[_TAG_PIXEL_Y]))
    stored_w, stored_h = size_wh
    if stored_w <= 0 or stored_h <= 0:
        return None
    turned = orientation in (5, 6, 7, 8)  # cv2.imread applies the orientation: the frame it gives is turned
    shown_wh = (stored_h, stored_w) if turned else (stored_w, stored_h)

    f35 = float(tags.get(_TAG_FOCAL_35MM, 0) or 0)
    if f35 > 0:
        return FocalHint(hfov_from_35mm(f35, *shown_wh), "exif:FocalLengthIn35mmFilm", f35, shown_wh)
    focal_mm = float(tags.get(_TAG_FOCAL_LENGTH, 0) or 0)
    xres = float(tags.get(_TAG_FOCAL_PLANE_XRES, 0) or 0)
    unit_mm = _UNIT_MM.get(int(tags.get(_TAG_FOCAL_PLANE_UNIT, 2)))
    if focal_mm > 0 and xres > 0 and unit_mm is not None:
        f_px = focal_mm * xres / unit_mm  # pixels along the stored image's width
        # Square pixels: the same f_px holds along the height, which is the shown width when turned.
        hfov = _hfov_from_focal_px(f_px, shown_wh[0])
        return FocalHint(hfov, "exif:FocalLength+FocalPlaneXResolution", focal_mm, shown_wh)
    return None


_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_WANTED_IFD0 = {_TAG_ORIENTATION, _TAG_EXIF_IFD}
_WANTED_EXIF = {
    _TAG_FOCAL_LENGTH,
    _TAG_FOCAL_35MM,
    _TAG_FOCAL_PLANE_XRES,
    _TAG_FOCAL_PLANE_UNIT,
    _TAG_PIXEL_X,
    _TAG_PIXEL_Y,
}


def _exif_tags(tiff: bytes) -> dict[int, float]:
    """The first value of the tags this module needs, from IFD0 and the Exif IFD of a TIFF block."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise _Malformed(f"TIFF byte order {tiff[:2]!r}")
    magic, ifd0 = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42:
        raise _Malformed(f"TIFF magic {magic}, not 42")
    tags = _ifd(tiff, order, ifd0, _WANTED_IFD0)
    exif_offset = tags.pop(_TAG_EXIF_IFD, None)
    if exif_offset is not None:
        tags.update(_ifd(tiff, order, int(exif_offset), _WANTED_EXIF))
    return tags


def _ifd(tiff: bytes, order: str, offset: int, wanted: set[int]) -> dict[int, float]:
    """One IFD's ``wanted`` tags (numeric, first value; a rational as a float)."""
    if offset < 8 or offset + 2 > len(tiff):
        raise _Malformed(f"IFD offset {offset} outside the {len(tiff)}-byte TIFF block")
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    if offset + 2 + 12 * count > len(tiff):
        raise _Malformed(f"IFD at {offset} with {count} entries runs past the TIFF block")
    found: dict[int, float] = {}
    for i in range(count):
        tag, typ, n, inline = struct.unpack_from(order + "HHI4s", tiff, offset + 2 + 12 * i)
        if tag not in wanted or typ not in _TIFF_TYPE_SIZE or n < 1:
            continue
        nbytes = _TIFF_TYPE_SIZE[typ] * n
        if nbytes <= 4:
            data = inline
        else:
            (at,) = struct.unpack(order + "I", inline)
            if at + nbytes > len(tiff):
                raise _Malformed(f"EXIF tag 0x{tag:04X} points outside the TIFF block")
            data = tiff[at : at + nbytes]
        found[tag] = _tiff_value(order, typ, data)
    return found


def _tiff_value(order: str, typ: int, data: bytes) -> float:
    if typ in (5, 10):  # (S)RATIONAL: numerator / denominator
        num, den = struct.unpack_from(order + ("II" if typ == 5 else "ii"), data)
        if den == 0:
            raise _Malformed("rational with denominator 0")
        return num / den
    fmt = {1: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 11: "f", 12: "d"}.get(typ)
    if fmt is None:
        raise _Malformed(f"TIFF type {typ} is not a number")
    return float(struct.unpack_from(order + fmt, data)[0])


# --- ISO BMFF: MP4 / MOV -----------------------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"udta", b"meta", b"mdia"}


def _atoms(f: BinaryIO, start: int, end: int):
    """(type, payload start, payload end) of each atom in [start, end), seeking from header to header."""
    pos = start
    for _ in range(_MAX_ATOMS):
        if pos + 8 > end:  # the end, or QuickTime's 32-bit zero terminator of a container
            f.seek(pos)
            if _read(f, end - pos).strip(b"\x00"):
                raise _Malformed(f"{end - pos} stray bytes at offset {pos}")
            return
        f.seek(pos)
        size, kind = struct.unpack(">I4s", _read(f, 8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", _read(f, 8))
            header = 16
        elif size == 0:  # to the end of the enclosing space
            size = end - pos
        if size < header or pos + size > end:
            raise _Malformed(f"atom {kind!r} at offset {pos} with size {size} does not fit in [{start}, {end})")
        yield kind, pos + header, pos + size
        pos += size
    raise _Malformed("too many atoms")


def _from_bmff(f: BinaryIO, file_size: int) -> FocalHint | None:
    """Find ``moov`` at the top level (seeking over ``mdat``), then the focal key and the video frame size."""
    for kind, start, end in _atoms(f, 0, file_size):
        if kind == b"moov":
            values: dict[str, object] = {}
            sizes: list[tuple[int, int]] = []
            _walk(f, start, end, values, sizes, depth=1)
            raw = values.get(QUICKTIME_FOCAL_35MM_KEY)
            if raw is None or not sizes:
                return None
            f35 = float(raw.strip()) if isinstance(raw, str) else float(raw)
            if not (f35 > 0 and math.isfinite(f35)):
                return None
            w, h = sizes[0]
            return FocalHint(hfov_from_35mm(f35, w, h), f"quicktime:{QUICKTIME_FOCAL_35MM_KEY}", f35, (w, h))
    return None


def _walk(f: BinaryIO, start: int, end: int, values: dict, sizes: list, depth: int) -> None:
    """Collect QuickTime metadata values (``meta`` with ``keys`` + ``ilst``) and video frame sizes (``tkhd``)."""
    if depth > _MAX_DEPTH:
        raise _Malformed("atoms nested too deep")
    for kind, a, b in _atoms(f, start, end):
        if kind == b"meta":
            _read_meta(f, a, b, values, sizes, depth)
        elif kind == b"tkhd":
            size_wh = _tkhd_size(_payload(f, a, b))
            if size_wh is not None:
                sizes.append(size_wh)
        elif kind in _CONTAINERS:
            _walk(f, a, b, values, sizes, depth + 1)


def _payload(f: BinaryIO, start: int, end: int) -> bytes:
    if end - start > _MAX_ATOM_READ:
        raise _Malformed(f"metadata atom of {end - start} bytes at offset {start}")
    f.seek(start)
    return _read(f, end - start)


def _read_meta(f: BinaryIO, start: int, end: int, values: dict, sizes: list, depth: int) -> None:
    """A ``meta`` atom: QuickTime's holds its children directly; ISO's (in ``udta``) is a full box, with
    4 bytes of version and flags first. Its ``keys`` name the entries of its ``ilst``."""
    f.seek(start)
    peek = f.read(12)
    if len(peek) >= 12 and peek[:4] == b"\x00\x00\x00\x00" and peek[4:8] != b"hdlr":
        start += 4  # full box
    keys: list[str] = []
    ilst: tuple[int, int] | None = None
    for kind, a, b in _atoms(f, start, end):
        if kind == b"keys":
            keys = _parse_keys(_payload(f, a, b))
        elif kind == b"ilst":
            ilst = (a, b)
        elif kind in _CONTAINERS:
            _walk(f, a, b, values, sizes, depth + 1)
    if ilst is None or not keys:
        return
    for kind, a, b in _atoms(f, *ilst):
        index = struct.unpack(">I", kind)[0]  # 1-based index into keys
        if not 1 <= index <= len(keys) or keys[index - 1] in values:
            continue
        for dkind, da, db in _atoms(f, a, b):
            if dkind == b"data":
                value = _data_value(_payload(f, da, db))
                if value is not None:
                    values[keys[index - 1]] = value
                break


def _parse_keys(data: bytes) -> list[str]:
    """``keys``: version/flags, entry count, then (size, namespace, name) per key."""
    (count,) = struct.unpack_from(">I", data, 4)
    keys, pos = [], 8
    for _ in range(count):
        size, _namespace = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > len(data):
            raise _Malformed(f"keys entry of size {size} at {pos} in a {len(data)}-byte keys atom")
        keys.append(data[pos + 8 : pos + size].decode("utf-8", errors="replace"))
        pos += size
    return keys


_DATA_INT = {21: True, 22: False, 65: True, 66: True, 67: True, 74: True, 75: False, 76: False, 77: False, 78: False}


def _data_value(data: bytes) -> float | str | None:
    """A ``data`` atom's value: type indicator (4 bytes: 0, then the 24-bit type), locale (4), value."""
    if len(data) < 8:
        raise _Malformed("data atom shorter than its header")
    typ = int.from_bytes(data[1:4], "big")
    value = data[8:]
    if typ == 1:  # UTF-8
        return value.decode("utf-8", errors="replace")
    if typ == 23 and len(value) == 4:
        return struct.unpack(">f", value)[0]
    if typ == 24 and len(value) == 8:
        return struct.unpack(">d", value)[0]
    if typ in _DATA_INT and len(value) in (1, 2, 4, 8):
        return float(int.from_bytes(value, "big", signed=_DATA_INT[typ]))
    return None


def _tkhd_size(data: bytes) -> tuple[int, int] | None:
    """A track header's picture size as displayed (its matrix's 90° turns applied); None for a track
    without a picture (audio, metadata)."""
    version = data[0]
    at = 4 + (32 if version == 1 else 20) + 8 + 8  # times, track id, duration; reserved, layer, group, volume
    a, b, _u, c, d, _v, _x, _y, _w = struct.unpack_from(">9i", data, at)
    w16, h16 = struct.unpack_from(">II", data, at + 36)
    w, h = round(w16 / 65536), round(h16 / 65536)
    if w <= 0 or h <= 0:
        return None
    if a == 0 and d == 0 and b != 0 and c != 0:  # a 90° or 270° turn
        return h, w
    return w, h
