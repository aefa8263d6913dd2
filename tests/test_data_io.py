"""Shared dataset file readers: every bad file is a DatasetError naming it, never a silently wrong array."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.data.boxes import check_bad_boxes
from perception.data.classmap import class_map_from_dict
from perception.data.io import (
    check_same_size,
    jpeg_reaches_end,
    list_images,
    read_image,
    read_json,
    read_label,
)
from perception.data.sample import DatasetError
from perception.errors import ConfigError


def _jpeg(h: int = 48, w: int = 64, seed: int = 0, progressive: bool = False) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok
    return buf.tobytes()


def _with_thumbnail(main: bytes, thumb: bytes) -> bytes:
    """``main`` with an APP9 segment right after SOI carrying a complete JPEG (as an EXIF thumbnail does)."""
    segment = b"\xff\xe9" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    return main[:2] + segment + main[2:]


def test_read_image_keeps_bgr_order(tmp_path):
    image = np.zeros((3, 5, 3), np.uint8)
    image[1, 2] = (10, 20, 30)  # B, G, R
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    assert out[1, 2].tolist() == [10, 20, 30]
    assert int(out.sum()) == 60


def test_grey_image_becomes_three_channels(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 6), 77, np.uint8))
    out = read_image(tmp_path / "g.png")
    assert out.shape == (4, 6, 3) and (out == 77).all()


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_an_error(tmp_path, progressive):
    data = _jpeg(progressive=progressive)
    (tmp_path / "full.jpg").write_bytes(data)
    assert read_image(tmp_path / "full.jpg").shape == (48, 64, 3)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut\.jpg: JPEG is truncated"):
        read_image(tmp_path / "cut.jpg")


def test_end_marker_of_a_thumbnail_does_not_hide_truncation(tmp_path):
    full = _with_thumbnail(_jpeg(seed=1), _jpeg(8, 8, seed=2))
    (tmp_path / "full.jpg").write_bytes(full)
    expected = cv2.imdecode(np.frombuffer(_jpeg(seed=1), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(read_image(tmp_path / "full.jpg"), expected)
    cut = full[: len(full) - 1500]
    assert b"\xff\xd9" in cut  # the thumbnail's end marker: searching the bytes for FFD9 would be fooled
    (tmp_path / "cut.jpg").write_bytes(cut)
    with pytest.raises(DatasetError, match=r"cut\.jpg: JPEG is truncated"):
        read_image(tmp_path / "cut.jpg")


def test_bytes_after_the_end_marker_are_allowed(tmp_path):
    data = _jpeg(seed=3)
    # a trailer longer than 4 KiB that even holds a start-of-scan marker and no end marker
    (tmp_path / "trailer.jpg").write_bytes(data + b"\xff\xda\x00\x08" + bytes(6000))
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(read_image(tmp_path / "trailer.jpg"), expected)
    assert jpeg_reaches_end(np.frombuffer(data, np.uint8))
    assert not jpeg_reaches_end(np.frombuffer(data[:-2], np.uint8))  # only the FFD9 missing


def test_empty_missing_and_non_image_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(DatasetError, match=r"empty\.png: image file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(DatasetError, match=r"empty\.png: label image file is empty"):
        read_label(tmp_path / "empty.png")
    with pytest.raises(DatasetError, match=r"text\.png: cannot decode image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(DatasetError, match=r"text\.png: cannot decode label image"):
        read_label(tmp_path / "text.png")
    with pytest.raises(DatasetError, match=r"nope\.png: cannot read image \(file not found\)"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(DatasetError, match=r"nope\.png: label image not found"):
        read_label(tmp_path / "nope.png")
    with pytest.raises(DatasetError, match=r"sub: cannot read image"):  # a folder, not a file
        (tmp_path / "sub").mkdir()
        read_image(tmp_path / "sub")


def test_read_label_keeps_values(tmp_path):
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out = read_label(tmp_path / "m.png")
    assert out.dtype == np.uint8 and np.array_equal(out, mask)
    inst = np.array([[0, 26001], [26002, 7]], np.uint16)
    cv2.imwrite(str(tmp_path / "i.png"), inst)
    assert np.array_equal(read_label(tmp_path / "i.png", (np.uint16,)), inst)


def test_three_channel_mask_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "colour.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"colour\.png: expected a one-channel label image, got 3 channels"):
        read_label(tmp_path / "colour.png")


def test_16_bit_mask_where_8_bit_is_expected(tmp_path):
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((4, 4), 300, np.uint16))
    with pytest.raises(DatasetError, match=r"deep\.png: expected uint8 label values, got uint16"):
        read_label(tmp_path / "deep.png")
    cv2.imwrite(str(tmp_path / "shallow.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"shallow\.png: expected uint16 label values, got uint8"):
        read_label(tmp_path / "shallow.png", (np.uint16,))


def test_check_same_size_names_both_files():
    check_same_size(np.zeros((3, 4), np.uint8), "m.png", np.zeros((3, 4, 3), np.uint8), "i.jpg")
    with pytest.raises(DatasetError, match=r"^m\.png: label is 4x2 but its image i\.jpg is 4x3$"):
        check_same_size(np.zeros((2, 4), np.uint8), "m.png", np.zeros((3, 4, 3), np.uint8), "i.jpg")


def test_read_json(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1, 2.5, null]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1, 2.5, None]}
    (tmp_path / "zero.json").write_bytes(b"")
    (tmp_path / "blank.json").write_text(" \n")
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "latin.json").write_bytes(b'"\xe9"')
    for name in ("zero", "blank"):
        with pytest.raises(DatasetError, match=rf"{name}\.json: file is empty"):
            read_json(tmp_path / f"{name}.json")
    for name in ("bad", "latin"):
        with pytest.raises(DatasetError, match=rf"{name}\.json: not valid JSON"):
            read_json(tmp_path / f"{name}.json")
    with pytest.raises(DatasetError, match=r"nope\.json: cannot read"):
        read_json(tmp_path / "nope.json")


def test_list_images(tmp_path):
    for rel in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.webp", ".cache/d.png", "sub/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a.jpg", "b.PNG", "sub/c.webp", "sub/e.png"]
    flat = [p.name for p in list_images(tmp_path, (".png",), recursive=False)]
    assert flat == ["b.PNG"]
    assert list_images(tmp_path / "missing") == []


def test_check_bad_boxes():
    assert check_bad_boxes("drop") == "drop"
    with pytest.raises(ValueError, match=r"bad_boxes must be one of \['error', 'drop'\], got 'skip'"):
        check_bad_boxes("skip")


def test_det_label_values():
    cm = class_map_from_dict({"det": {"classes": {8: "car", 9: "pedestrian", 26: "car"}}}, "cm.yaml")
    assert cm.det_label_values() == {8: 0, 9: 1, 26: 0}
    with pytest.raises(ConfigError, match="cm.yaml: det.classes key 'car' must be a label value"):
        class_map_from_dict({"det": {"classes": {"car": "car"}}}, "cm.yaml").det_label_values()
