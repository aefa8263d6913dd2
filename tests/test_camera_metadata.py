"""Focal length hints from JPEG EXIF and MP4/MOV QuickTime metadata, on files built byte by byte here."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception import camera_metadata
from perception.camera_metadata import QUICKTIME_FOCAL_35MM_KEY, focal_from_metadata, hfov_from_35mm
from perception.errors import InputError

DIAG = math.hypot(36.0, 24.0)  # 43.27 mm

# --- JPEG with a hand-made EXIF block ----------------------------------------------------------------

SHORT, LONG, RATIONAL = 3, 4, 5


def _encode(order: str, typ: int, values: list) -> bytes:
    if typ == RATIONAL:
        return b"".join(struct.pack(order + "II", n, d) for n, d in values)
    return struct.pack(order + {SHORT: "H", LONG: "I"}[typ] * len(values), *values)


def _tiff(order: str, ifd0: list[tuple], exif: list[tuple]) -> bytes:
    """A TIFF block: header, IFD0 (with the Exif IFD pointer added), the Exif IFD, then the values that do
    not fit in an entry. Entries: (tag, type, [values])."""
    ifd0 = [*ifd0, (0x8769, LONG, [0])]  # offset patched below
    ifd0_at = 8
    exif_at = ifd0_at + 2 + 12 * len(ifd0) + 4
    data_at = exif_at + 2 + 12 * len(exif) + 4
    data = b""

    def ifd(entries):
        nonlocal data
        out = struct.pack(order + "H", len(entries))
        for tag, typ, values in sorted(entries):
            if tag == 0x8769:
                values = [exif_at]
            raw = _encode(order, typ, values)
            if len(raw) <= 4:
                field = raw.ljust(4, b"\x00")
            else:
                field = struct.pack(order + "I", data_at + len(data))
                data += raw
            out += struct.pack(order + "HHI", tag, typ, len(values)) + field
        return out + struct.pack(order + "I", 0)

    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, ifd0_at)
    body = ifd(ifd0) + ifd(exif)
    return head + body + data


def _jpeg(tmp_path, name: str, w: int, h: int, tiff: bytes | None) -> str:
    """A real (cv2-encoded) JPEG w x h with an APP1 Exif segment inserted right after SOI."""
    ok, enc = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))
    assert ok
    data = enc.tobytes()
    if tiff is not None:
        payload = b"Exif\x00\x00" + tiff
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_exif_35mm_equivalent_on_a_3_to_2_image_is_the_36mm_width(tmp_path, order):
    path = _jpeg(tmp_path, "a.jpg", 60, 40, _tiff(order, [], [(0xA405, SHORT, [18])]))
    hint = focal_from_metadata(path)
    assert hint is not None and hint.source == "exif:FocalLengthIn35mmFilm"
    assert hint.raw_value == 18 and hint.image_size_wh == (60, 40)
    assert hint.hfov_deg == pytest.approx(90.0)  # 2·atan(36 / (2·18))
    assert hint.focal_px(60, 40) == pytest.approx(30.0) and hint.focal_px(120, 80) == pytest.approx(60.0)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_exif_35mm_equivalent_on_a_4_to_3_image_uses_the_diagonal(tmp_path, order):
    path = _jpeg(tmp_path, "b.jpg", 64, 48, _tiff(order, [(0x0112, SHORT, [1])], [(0xA405, SHORT, [26])]))
    hint = focal_from_metadata(path)
    w35 = DIAG * 64 / 80  # 34.61 mm: the width of a 4:3 frame with a 43.27 mm diagonal
    assert hint.hfov_deg == pytest.approx(math.degrees(2 * math.atan(w35 / 52)))
    assert hint.hfov_deg == pytest.approx(67.30, abs=0.01)
    assert hint.hfov_deg < math.degrees(2 * math.atan(36 / 52)), "narrower than the 3:2 width would say"


def test_exif_orientation_turned_90_degrees_gives_the_fov_across_the_turned_frame(tmp_path):
    path = _jpeg(tmp_path, "c.jpg", 60, 40, _tiff(">", [(0x0112, SHORT, [6])], [(0xA405, SHORT, [12])]))
    assert cv2.imread(path).shape == (60, 40, 3), "cv2.imread turns the image as EXIF says"
    hint = focal_from_metadata(path)
    assert hint.image_size_wh == (40, 60)
    assert hint.hfov_deg == pytest.approx(90.0)  # turned 3:2: the equivalent width is 24 mm, 2·atan(24 / 24)
    assert hint.focal_px(40, 60) == pytest.approx(20.0) and hint.focal_px(60, 40) == pytest.approx(20.0)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize(
    "xres, unit",
    [((80, 1), [3]), ((2032, 10), None), ((8, 1), [4])],
    ids=["cm", "inch-by-default", "mm"],
)
def test_exif_focal_plane_resolution_fallback(tmp_path, order, xres, unit):
    # 4 mm lens, 8 px per mm on the focal plane: f = 32 px; 64 px wide: hfov = 2·atan(32 / 32) = 90°
    exif = [(0x920A, RATIONAL, [(40, 10)]), (0xA20E, RATIONAL, [xres]), (0xA405, SHORT, [0])]
    if unit is not None:
        exif.append((0xA210, SHORT, unit))
    hint = focal_from_metadata(_jpeg(tmp_path, "d.jpg", 64, 48, _tiff(order, [], exif)))
    assert hint.source == "exif:FocalLength+FocalPlaneXResolution" and hint.raw_value == pytest.approx(4.0)
    assert hint.hfov_deg == pytest.approx(90.0) and hint.image_size_wh == (64, 48)


def test_exif_35mm_equivalent_wins_over_the_focal_plane_fallback(tmp_path):
    exif = [(0x920A, RATIONAL, [(40, 10)]), (0xA20E, RATIONAL, [(80, 1)]), (0xA210, SHORT, [3]), (0xA405, SHORT, [18])]
    hint = focal_from_metadata(_jpeg(tmp_path, "e.jpg", 60, 40, _tiff("<", [], exif)))
    assert hint.source == "exif:FocalLengthIn35mmFilm" and hint.hfov_deg == pytest.approx(90.0)


def test_exif_written_by_pillow(tmp_path):
    """Another EXIF writer than the hand-made one above (Pillow: the test side only, not the runtime)."""
    image_mod = pytest.importorskip("PIL.Image")
    from PIL.TiffImagePlugin import IFDRational

    img = image_mod.new("RGB", (64, 48))
    exif = img.getexif()
    exif[0x0112] = 8  # turned 90°: cv2.imread gives 48 x 64
    exif.get_ifd(0x8769).update({0xA405: 26})
    img.save(tmp_path / "pil35.jpg", exif=exif)
    hint = focal_from_metadata(tmp_path / "pil35.jpg")
    assert hint.image_size_wh == (48, 64) and cv2.imread(str(tmp_path / "pil35.jpg")).shape == (64, 48, 3)
    assert hint.hfov_deg == pytest.approx(math.degrees(2 * math.atan(DIAG * 48 / 80 / 52)))

    img = image_mod.new("RGB", (64, 48))
    exif = img.getexif()
    exif.get_ifd(0x8769).update({0x920A: IFDRational(4, 1), 0xA20E: IFDRational(80, 1), 0xA210: 3})
    img.save(tmp_path / "pilfp.jpg", exif=exif)
    hint = focal_from_metadata(tmp_path / "pilfp.jpg")
    assert hint.source == "exif:FocalLength+FocalPlaneXResolution" and hint.hfov_deg == pytest.approx(90.0)


def test_jpeg_without_a_focal_length_gives_none(tmp_path):
    plain = tmp_path / "cv2.jpg"
    assert cv2.imwrite(str(plain), np.zeros((40, 60, 3), np.uint8))
    assert focal_from_metadata(plain) is None, "cv2 writes JFIF, no EXIF"
    assert focal_from_metadata(_jpeg(tmp_path, "o.jpg", 60, 40, _tiff("<", [(0x0112, SHORT, [1])], []))) is None
    png = tmp_path / "x.png"
    assert cv2.imwrite(str(png), np.zeros((40, 60, 3), np.uint8))
    assert focal_from_metadata(png) is None


def test_malformed_exif_gives_none(tmp_path):
    full = _jpeg(tmp_path, "full.jpg", 60, 40, _tiff("<", [], [(0xA405, SHORT, [18])]))
    data = Path(full).read_bytes()
    cases = {
        "truncated_in_exif": data[:30],
        "truncated_before_sof": data[: data.index(b"\xff\xc0")],
        "garbage_after_soi": b"\xff\xd8" + bytes(range(256)) * 4,
        "bad_byte_order": data.replace(b"Exif\x00\x00II", b"Exif\x00\x00XX"),
        "ifd_offset_out_of_range": data.replace(
            b"Exif\x00\x00II*\x00\x08\x00\x00\x00", b"Exif\x00\x00II*\x00\xff\xff\x00\x00"
        ),
        "segment_length_past_end": data[:2] + b"\xff\xe1\xff\xf0" + data[6:40],
    }
    assert focal_from_metadata(full) is not None
    for name, blob in cases.items():
        assert blob != data, name
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(blob)
        assert focal_from_metadata(path) is None, name
    zero_den = _tiff("<", [], [(0x920A, RATIONAL, [(40, 0)]), (0xA20E, RATIONAL, [(80, 1)])])
    assert focal_from_metadata(_jpeg(tmp_path, "zero.jpg", 64, 48, zero_den)) is None


# --- MP4 / MOV with a hand-made atom tree ------------------------------------------------------------


def _atom(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _tkhd(w: int, h: int, rotate_90: bool = False) -> bytes:
    one, zero = 0x10000, 0
    matrix = [zero, one, 0, -one, zero, 0, 0, 0, 0x40000000] if rotate_90 else [one, 0, 0, 0, one, 0, 0, 0, 0x40000000]
    body = b"\x00\x00\x00\x07" + struct.pack(">IIIII", 0, 0, 1, 0, 100) + bytes(8) + struct.pack(">hhhH", 0, 0, 0, 0)
    body += struct.pack(">9i", *matrix) + struct.pack(">II", w << 16, h << 16)
    return _atom(b"tkhd", body)


def _trak(w: int, h: int, rotate_90: bool = False) -> bytes:
    hdlr = _atom(b"hdlr", bytes(4) + bytes(4) + (b"vide" if w else b"soun") + bytes(12) + b"\x00")
    return _atom(b"trak", _tkhd(w, h, rotate_90) + _atom(b"mdia", hdlr))


def _meta(items: dict[str, tuple[int, bytes]], full_box: bool = False) -> bytes:
    """QuickTime metadata: hdlr 'mdta', keys (1-based), ilst entries named by the key index, each a data atom
    (type indicator, locale, value)."""
    hdlr = _atom(b"hdlr", bytes(8) + b"mdta" + bytes(12) + b"\x00")
    keys = struct.pack(">II", 0, len(items))
    ilst = b""
    for i, (key, (typ, value)) in enumerate(items.items(), start=1):
        name = key.encode()
        keys += struct.pack(">I4s", 8 + len(name), b"mdta") + name
        ilst += _atom(struct.pack(">I", i), _atom(b"data", struct.pack(">II", typ, 0) + value))
    return _atom(b"meta", (bytes(4) if full_box else b"") + hdlr + _atom(b"keys", keys) + _atom(b"ilst", ilst))


def _mp4(tmp_path, name: str, moov_children: bytes, mdat: bytes = bytes(64)) -> str:
    ftyp = _atom(b"ftyp", b"qt  " + bytes(4) + b"qt  ")
    path = tmp_path / name
    path.write_bytes(ftyp + _atom(b"mdat", mdat) + _atom(b"moov", moov_children))
    return str(path)


def _expected_hfov(f35: float, w: int, h: int) -> float:
    return math.degrees(2 * math.atan(DIAG * w / math.hypot(w, h) / (2 * f35)))


OTHER = {"com.apple.quicktime.make": (1, b"Apple"), "com.apple.quicktime.model": (1, b"iPhone 15")}


@pytest.mark.parametrize(
    "typ, value",
    [(67, struct.pack(">i", 26)), (22, struct.pack(">H", 26)), (23, struct.pack(">f", 26.0)), (1, b"26")],
    ids=["int32", "uint16", "float32", "utf8"],
)
def test_quicktime_35mm_equivalent_key(tmp_path, typ, value):
    meta = _meta({**OTHER, QUICKTIME_FOCAL_35MM_KEY: (typ, value)})
    path = _mp4(tmp_path, "clip.mov", _atom(b"mvhd", bytes(100)) + _trak(0, 0) + _trak(1920, 1080) + meta)
    hint = focal_from_metadata(path)
    assert hint.source == "quicktime:com.apple.quicktime.camera.focal_length.35mm_equivalent"
    assert hint.raw_value == 26 and hint.image_size_wh == (1920, 1080)
    # 16:9: equivalent width 43.27 · 1920 / 2202.9 = 37.71 mm; 2·atan(37.71 / 52) = 71.90°
    assert hint.hfov_deg == pytest.approx(_expected_hfov(26, 1920, 1080))
    assert hint.hfov_deg == pytest.approx(71.90, abs=0.01)


def test_quicktime_key_in_udta_meta_full_box_and_a_turned_track(tmp_path):
    meta = _meta({QUICKTIME_FOCAL_35MM_KEY: (67, struct.pack(">i", 24))}, full_box=True)
    path = _mp4(tmp_path, "portrait.mp4", _trak(1920, 1080, rotate_90=True) + _atom(b"udta", meta))
    hint = focal_from_metadata(path)
    assert hint.image_size_wh == (1080, 1920)
    assert hint.hfov_deg == pytest.approx(_expected_hfov(24, 1080, 1920))


def test_mp4_without_the_key_or_malformed_gives_none(tmp_path):
    good_children = _trak(640, 480) + _meta({QUICKTIME_FOCAL_35MM_KEY: (67, struct.pack(">i", 26))})
    good = Path(_mp4(tmp_path, "good.mp4", good_children)).read_bytes()
    assert focal_from_metadata(tmp_path / "good.mp4") is not None
    moov_at = good.index(b"moov") - 4
    cases = {
        "no_key": Path(_mp4(tmp_path, "n.mp4", _trak(640, 480) + _meta(OTHER))).read_bytes(),
        "no_video_track": Path(_mp4(tmp_path, "a.mp4", _meta({QUICKTIME_FOCAL_35MM_KEY: (1, b"26")}))).read_bytes(),
        "no_moov": good[:moov_at],
        "truncated_moov": good[: moov_at + 60],
        "atom_size_below_header": good[:moov_at] + struct.pack(">I4s", 4, b"moov") + good[moov_at + 8 :],
        "atom_size_past_end": good[:moov_at] + struct.pack(">I4s", 10**6, b"moov") + good[moov_at + 8 :],
        "zero_focal": Path(
            _mp4(tmp_path, "z.mp4", _trak(640, 480) + _meta({QUICKTIME_FOCAL_35MM_KEY: (67, bytes(4))}))
        ).read_bytes(),
        "text_focal": Path(
            _mp4(tmp_path, "t.mp4", _trak(640, 480) + _meta({QUICKTIME_FOCAL_35MM_KEY: (1, b"wide")}))
        ).read_bytes(),
        "garbage": b"\x00\x00\x00\x10ftypisom" + bytes(range(256)) * 8,
        "empty": b"",
    }
    for name, blob in cases.items():
        path = tmp_path / f"bad_{name}.mp4"
        path.write_bytes(blob)
        assert focal_from_metadata(path) is None, name


class _CountingFile:
    def __init__(self, f):
        self._f, self.read_bytes = f, 0

    def read(self, n=-1):
        data = self._f.read(n)
        self.read_bytes += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_large_video_is_seeked_through_not_read(tmp_path, monkeypatch):
    """moov after a 4 GiB mdat (64-bit size, a sparse file): only the atom headers and metadata are read."""
    ftyp = _atom(b"ftyp", b"isom" + bytes(4) + b"isom")
    mdat_size = 4 * 2**30 + 16
    moov = _atom(b"moov", _trak(1280, 720) + _meta({QUICKTIME_FOCAL_35MM_KEY: (67, struct.pack(">i", 28))}))
    path = tmp_path / "big.mp4"
    with open(path, "wb") as f:
        f.write(ftyp + struct.pack(">I4sQ", 1, b"mdat", mdat_size))
        f.seek(len(ftyp) + mdat_size)
        f.write(moov)
    opened = []

    def counting_open(*args, **kwargs):
        opened.append(_CountingFile(open(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(camera_metadata, "open", counting_open, raising=False)
    hint = focal_from_metadata(path)
    assert hint is not None and hint.hfov_deg == pytest.approx(_expected_hfov(28, 1280, 720))
    assert opened and opened[0].read_bytes < 4096


def test_a_missing_file_or_a_folder_raises_input_error_naming_it(tmp_path):
    with pytest.raises(InputError, match="nope.jpg: no such file"):
        focal_from_metadata(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="not a file"):
        focal_from_metadata(tmp_path)


def test_hfov_from_35mm_by_hand():
    assert hfov_from_35mm(18, 3000, 2000) == pytest.approx(90.0)
    assert hfov_from_35mm(12, 2000, 3000) == pytest.approx(90.0)
    # the diagonal angle of any aspect equals the full frame's: 2·atan(43.27 / (2·f35))
    for w, h in ((4000, 3000), (1920, 1080), (1000, 1000)):
        half_w = math.tan(math.radians(hfov_from_35mm(26, w, h)) / 2)
        assert math.degrees(2 * math.atan(half_w * math.hypot(w, h) / w)) == pytest.approx(
            math.degrees(2 * math.atan(DIAG / 52))
        )
    with pytest.raises(ValueError):
        hfov_from_35mm(0, 100, 100)
