"""`perception run` annotated output: an image folder gives one annotated image per input image, with the
same file name, extension and size; a video gives annotated.mp4; --no-video switches both off."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import synthetic_frame

from perception.cli import main
from perception.errors import OutputError
from perception.sinks import ImageSink

NAMES = ("000.jpg", "001.png", "frame_b.jpeg")


def _folder(tmp_path, names=NAMES):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), synthetic_frame(i))
    return folder


def _run(capsys, *argv):
    code = main(["run", *argv, "-q"])
    return code, capsys.readouterr().err


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_image_folder_gives_annotated_images_with_the_same_names_and_sizes(capsys, fused_model, tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "o"
    code, err = _run(capsys, str(folder), "--model", str(fused_model), "--out", str(out))
    assert code == 0, err
    assert _files(out / "annotated") == sorted(NAMES)
    assert not (out / "annotated.mp4").exists()
    for name in NAMES:
        original = cv2.imread(str(folder / name))
        annotated = cv2.imread(str(out / "annotated" / name))
        assert annotated is not None and annotated.shape == original.shape == (108, 192, 3)
        assert not np.array_equal(annotated, original), "the overlay is drawn"
    assert cv2.imread(str(out / "annotated" / "001.png"), cv2.IMREAD_UNCHANGED).shape == (108, 192, 3)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == [0, 1, 2] and all("detections" in r for r in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["images"] == str(out / "annotated") and "video" not in summary["outputs"]
    assert f"wrote {out / 'annotated'}" in err


def test_no_video_switches_the_annotated_images_off(capsys, fused_model, tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "o"
    code, err = _run(capsys, str(folder), "--model", str(fused_model), "--out", str(out), "--no-video")
    assert code == 0, err
    assert _files(out) == ["results.jsonl", "summary.json"]


def test_preset_output_video_false_switches_the_annotated_images_off(capsys, fused_model, tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"model: {fused_model}\noutput:\n  video: false\n")
    out = tmp_path / "o"
    code, err = _run(capsys, str(_folder(tmp_path)), "--config", str(preset), "--out", str(out))
    assert code == 0, err
    assert not (out / "annotated").exists() and not (out / "annotated.mp4").exists()


def test_video_still_gives_an_mp4_and_no_images(capsys, fused_model, video, tmp_path):
    out = tmp_path / "o"
    code, err = _run(capsys, str(video), "--model", str(fused_model), "--out", str(out))
    assert code == 0, err
    assert (out / "annotated.mp4").stat().st_size > 0 and not (out / "annotated").exists()
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_unreadable_image_is_reported_and_the_others_are_annotated(capsys, fused_model, tmp_path):
    folder = _folder(tmp_path)
    (folder / "001.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    code, err = _run(capsys, str(folder), "--model", str(fused_model), "--out", str(out))
    assert code == 1, "a skipped frame is a problem the exit code reports"
    assert _files(out / "annotated") == ["000.jpg", "frame_b.jpeg"]
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert "not an image" in lines[1]["error"] and "detections" in lines[2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_failed"] == 1 and summary["frames_processed"] == 2
    (problem,) = summary["problems"]
    assert "001.png" in problem and "no annotated image" in problem
    assert "001.png" in err


def test_single_image_gives_one_annotated_image(capsys, fused_model, tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "o"
    code, err = _run(capsys, str(folder / "001.png"), "--model", str(fused_model), "--out", str(out))
    assert code == 0, err
    assert _files(out / "annotated") == ["001.png"]


def test_image_sink_keeps_relative_paths_and_refuses_to_overwrite_the_inputs(tmp_path):
    root = tmp_path / "in"
    sink = ImageSink(tmp_path / "out", root)
    image = synthetic_frame(0)
    written = sink.write(image, root / "day1" / "cam0" / "x.png")
    assert written == tmp_path / "out" / "day1" / "cam0" / "x.png"
    assert np.array_equal(cv2.imread(str(written)), image), "PNG stays lossless"
    assert sink.write(image, tmp_path / "elsewhere" / "y.jpg") == tmp_path / "out" / "y.jpg"
    assert sink.images_written == 2
    with pytest.raises(OutputError, match="overwrite the input images"):
        ImageSink(root, root)
    with pytest.raises(OutputError, match="z.unknownext"):
        sink.write(image, root / "z.unknownext")
