"""The `perception` command: every bad input gives one line naming the file, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import onnx
import pytest
from conftest import synthetic_frame, write_video
from onnx import TensorProto, helper

from perception.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_run_on_video_succeeds(capsys, fused_model, video, tmp_path):
    code, err = _run(capsys, "run", str(video), "--model", str(fused_model), "--out", str(tmp_path / "o"), "-q")
    assert code == 0, err
    assert "12 frames processed" in err and "median ms/frame" in err
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 12
    assert (tmp_path / "o" / "annotated.mp4").stat().st_size > 0


def test_run_on_image_folder_with_options(capsys, fused_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), synthetic_frame(i))
    code, err = _run(
        capsys,
        "run",
        str(folder),
        "--model",
        str(fused_model),
        "--out",
        str(tmp_path / "o"),
        "--roi",
        "0,20,192,88",
        "--score",
        "0.3",
        "--no-video",
        "-q",
    )
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and not (tmp_path / "o" / "annotated.mp4").exists()
    for d in (d for r in lines for d in r["detections"]):
        assert d["score"] > 0.3 and d["box"][1] >= 20


def test_run_with_config_preset(capsys, fused_model, video, tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"model: {fused_model}\noutput:\n  video: false\nrunner:\n  queue_size: 2\n")
    code, err = _run(capsys, "run", str(video), "--config", str(preset), "--out", str(tmp_path / "o"), "-q")
    assert code == 0, err
    assert not (tmp_path / "o" / "annotated.mp4").exists()


def test_torch_backend_from_the_command_line(capsys, torch_checkpoint, video, tmp_path):
    pytest.importorskip("torch")
    code, err = _run(capsys, "run", str(video), "--model", str(torch_checkpoint), "--out", str(tmp_path), "-q")
    assert code == 0, err
    assert "backend: torch" in err


def _plain_onnx(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing_file",
        "empty_dir",
        "not_a_video",
        "truncated_video",
        "wrong_size_frame",
        "model_not_onnx",
        "onnx_without_contract",
        "onnx_other_shapes",
        "unwritable_output",
        "bad_config_key",
        "undistort_without_camera",
        "score_out_of_range",
        "negative_threads",
        "field_of_view_out_of_range",
    ],
)
def test_bad_input_gives_one_clear_line_and_nonzero_exit(case, capsys, fused_model, video, tmp_path):
    out = tmp_path / "out"
    argv = ["run", str(video), "--model", str(fused_model), "--out", str(out), "-q"]
    if case == "missing_file":
        argv[1], needle = str(tmp_path / "nope.mp4"), "nope.mp4: no such file or folder"
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        argv[1], needle = str(tmp_path / "empty"), "empty: no images"
    elif case == "not_a_video":
        (tmp_path / "doc.mp4").write_text("just text\n" * 50)
        argv[1], needle = str(tmp_path / "doc.mp4"), "doc.mp4: not a video"
    elif case == "truncated_video":
        full = write_video(tmp_path / "full.avi", n=30, fourcc="MJPG").read_bytes()
        (tmp_path / "cut.avi").write_bytes(full[: len(full) // 2])
        argv[1], needle = str(tmp_path / "cut.avi"), "cut.avi: decoding stopped after"
    elif case == "wrong_size_frame":
        folder = tmp_path / "imgs"
        folder.mkdir()
        cv2.imwrite(str(folder / "a.png"), synthetic_frame(0))
        cv2.imwrite(str(folder / "b.png"), synthetic_frame(1, 64, 48))
        argv[1], needle = str(folder), "b.png): frame is 64x48, the stream is 192x108"
    elif case == "model_not_onnx":
        (tmp_path / "m.onnx").write_text("definitely not protobuf " * 20)
        argv[3], needle = str(tmp_path / "m.onnx"), "m.onnx: "
    elif case == "onnx_without_contract":
        argv[3], needle = str(_plain_onnx(tmp_path / "plain.onnx")), "plain.onnx: no 'perception.contract' metadata"
    elif case == "onnx_other_shapes":
        model = onnx.load(str(fused_model))
        meta = json.loads(model.metadata_props[0].value)
        meta["input"]["size"] = [64, 64]
        model.metadata_props[0].value = json.dumps(meta)
        onnx.save(model, str(tmp_path / "other.onnx"))
        argv[3], needle = str(tmp_path / "other.onnx"), "other.onnx: model does not match its contract"
    elif case == "unwritable_output":
        (tmp_path / "file").write_text("x")
        argv[5], needle = str(tmp_path / "file" / "out"), "out: output folder is not writable"
    elif case == "bad_config_key":
        (tmp_path / "p.yaml").write_text("preprocess:\n  rio: [0, 0, 10, 10]\n")
        argv += ["--config", str(tmp_path / "p.yaml")]
        needle = "p.yaml: unknown key 'preprocess.rio'"
    elif case == "undistort_without_camera":
        argv += ["--undistort"]
        needle = "undistortion needs a camera file"
    elif case == "score_out_of_range":
        argv += ["--score", "1.5"]
        needle = "command line: 'postprocess.score_threshold' must be in [0, 1], got 1.5"
    elif case == "negative_threads":
        argv += ["--threads", "-2"]
        needle = "command line: 'backend.threads' must be >= 0, got -2"
    elif case == "field_of_view_out_of_range":
        argv += ["--hfov", "190"]
        needle = "command line: 'fusion.auto_camera.hfov_deg' must be in (0, 180), got 190.0"
    code, err = _run(capsys, *argv)
    assert code != 0
    line = (
        _error_line(err)
        if case not in ("truncated_video", "wrong_size_frame")
        else next(x for x in err.splitlines() if needle in x)
    )
    assert needle in line, err
    if case in ("truncated_video", "wrong_size_frame"):
        # Results for every frame read are still there and valid.
        lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        assert lines and [r["frame"] for r in lines] == list(range(len(lines)))


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, err = _run(capsys, "--debug", "run", str(tmp_path / "missing.mp4"))
    assert code == 1 and "Traceback" in err and "error:" in err


def test_real_process_prints_one_line_and_exit_code(tmp_path, fused_model):
    """Through a real process, so decoder chatter on stderr is checked too."""
    (tmp_path / "bad.mp4").write_bytes(os.urandom(4096))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception",
            "run",
            str(tmp_path / "bad.mp4"),
            "--model",
            str(fused_model),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bad.mp4'}: not a video OpenCV can decode (no video stream found)"
    ]


def test_hfov_on_the_command_line_tells_camera_auto_the_lens(tmp_path):
    from perception.cli import build_parser
    from perception.cli.options import pipeline_config

    preset = tmp_path / "p.yaml"
    preset.write_text("fusion:\n  auto_camera:\n    lane_width_m: 3.3\n")
    args = build_parser().parse_args(["run", "clip.mp4", "--config", str(preset), "--hfov", "100"])
    config, _ = pipeline_config(args)
    assert config.fusion.auto_camera.hfov_deg == 100 and config.fusion.auto_camera.lane_width_m == 3.3
