"""`perception bench`: the table, the JSON numbers in both modes, and the peer stack behind the Pipeline
interface (its stage split must not change what the peers predict).

Our model is the tiny fused test model on a few synthetic frames. The peer models (../shared/peers, or
$PERCEPTION_PEERS) take 0.3-3 s per frame on 2 cores, so their tests use one or two frames and skip when
the files are absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_frame, write_video

from perception.bench import BenchResult, BenchRun, bench_one, format_table, run_bench
from perception.cli import main
from perception.errors import ModelError
from perception.frames import Frame
from perception.peers import NANODET_FILE, TWINLITE_FILE, PeerPipeline, peer_path
from perception.sinks import scene_to_json

STAGE_COLUMNS = ("decode", "preprocess", "inference", "postprocess", "write")


def _peers_or_skip():
    try:
        return peer_path(TWINLITE_FILE).parent, peer_path(NANODET_FILE).parent
    except ModelError as err:
        pytest.skip(str(err))


@pytest.fixture()
def clip(tmp_path):
    return write_video(tmp_path / "clip.mp4", n=4)


def _table_lines(text: str) -> tuple[list[str], list[str]]:
    """(header cells, lines) of the table in the report (the line starting with 'model')."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("model  "))
    assert set(lines[i + 1].replace(" ", "")) == {"-"}, "a dashed rule under the header"
    return lines[i].split("  "), lines[i:]


def test_offline_bench_reports_table_and_json(fused_model, clip, tmp_path):
    logged: list[str] = []
    json_path = tmp_path / "bench.json"
    text = run_bench(
        str(clip),
        [str(fused_model)],
        mode="offline",
        runs=2,
        batch=2,
        max_frames=3,
        json_path=json_path,
        log=logged.append,
    )
    header, lines = _table_lines(text)
    cells = [c.strip() for c in header if c.strip()]
    assert cells[:2] == ["model", "frames/s [range]"] and cells[-2:] == [
        "forward alone",
        "non-network in run / vs alone",
    ]
    assert [c for c in cells if c in STAGE_COLUMNS] == list(STAGE_COLUMNS), "stage columns in flow order"
    row = next(line for line in lines if line.startswith("fused.onnx"))
    assert row.rstrip().endswith("%") and "frames/s" not in row
    assert "mode offline batch 2, 2 runs after a warm-up" in text and "backend of fused.onnx: onnxruntime" in text
    assert "(no render stage in these runs)" in text and "peak resident memory" in text
    assert sum("run " in m and "frames/s over 3 frames" in m for m in logged) == 2
    data = json.loads(json_path.read_text())
    assert (data["mode"], data["batch"], data["runs"], data["peers"]) == ("offline", 2, 2, None)
    model = data["models"][0]
    assert model["name"] == "fused.onnx" and model["fps_median"] > 0
    assert model["fps_range"][0] <= model["fps_median"] <= model["fps_range"][1]
    assert set(STAGE_COLUMNS) <= set(model["stage_median_ms"])
    assert all(v >= 0 for v in model["stage_median_ms"].values())
    assert 0 <= model["non_network_share"] <= 1
    # The forward alone is at most a frame's time, so its share is a fraction; a frame costs more than it.
    assert 0 < model["forward_alone_ms"] and model["non_network_share_vs_forward_alone"] <= 1
    assert model["forward_alone_ms"] * model["fps_median"] / 1e3 < 1.0
    assert model["runs"] == [
        {"fps": model["runs"][0]["fps"], "frames": 3},
        {"fps": model["runs"][1]["fps"], "frames": 3},
    ]
    assert "latency_ms" not in model


def test_live_bench_from_the_command_line(capsys, fused_model, clip, tmp_path):
    json_path = tmp_path / "live.json"
    code = main(
        [
            "bench",
            str(clip),
            "--model",
            str(fused_model),
            "--mode",
            "live",
            "--runs",
            "2",
            "--max-frames",
            "3",
            "--json",
            str(json_path),
            "-q",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    header, _ = _table_lines(out)
    assert "latency p50/p90/p99 ms" in header[-1] and "mode live (batch 1)" in out
    data = json.loads(json_path.read_text())
    assert (data["mode"], data["batch"]) == ("live", 1)
    model = data["models"][0]
    assert model["fps_median"] > 0 and 0 <= model["non_network_share"] <= 1
    assert set(STAGE_COLUMNS) <= set(model["stage_median_ms"])
    lat = model["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert [r["frames"] for r in model["runs"]] == [3, 3]


def test_bench_refuses_an_unknown_mode(fused_model, clip):
    from perception.config import PipelineConfig
    from perception.pipeline import build_pipeline

    with pytest.raises(ValueError, match="mode must be one of"):
        bench_one("m", build_pipeline(PipelineConfig(model=str(fused_model))), str(clip), mode="realtime")


def _result(name: str, fps: list[float], inference_ms: float, latency: list[float] | None = None) -> BenchResult:
    runs = [BenchRun(f, {"decode": 1.0, "inference": inference_ms}, 10, list(latency or [])) for f in fps]
    return BenchResult(name, "cpu", runs)


def test_medians_share_and_ratio_line_of_the_table():
    ours = _result("ours", [40.0, 50.0, 60.0], 10.0, latency=[10, 20, 30, 40, 100])
    peers = _result("peers", [2.0, 2.5, 3.0], 300.0, latency=[400])
    assert ours.fps == 50.0 and ours.stage("inference") == 10.0 and ours.stage("render") is None
    # 1 - inference ms x frames/s per run: 0.6, 0.5, 0.4 -> median 0.5
    assert ours.non_network_share == pytest.approx(0.5)
    assert ours.latency(50) <= ours.latency(90) <= ours.latency(99) <= 100
    text = format_table([ours], peers, "live")
    assert "ours: 20.0x the peer stack's frames/s" in text
    assert "50.0 [40.0-60.0]" in text and "50 %" in text
    assert "(no preprocess, postprocess, fusion, render, write stage in these runs)" in text
    # Measured alone, the forward is 8 ms: 1 - 8 ms x 40/50/60 frames/s = 0.68, 0.6, 0.52 -> median 0.6.
    ours.forward_alone_ms = 8.0
    assert ours.non_network_share_vs_alone == pytest.approx(0.6)
    assert "8.00" in format_table([ours], None, "offline") and "50 % / 60 %" in format_table([ours], None, "offline")
    d = ours.to_dict()
    assert d["fps_range"] == [40.0, 60.0] and set(d["latency_ms"]) == {"p50", "p90", "p99"}


# --- the peer stack ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def peer_pipe():
    peer_dir, _ = _peers_or_skip()
    return PeerPipeline(threads=0, peer_dir=peer_dir)


def test_peer_pipeline_scene_results(peer_pipe):
    frames = [Frame(i, i / 10, synthetic_frame(i), "clip") for i in range(2)]
    results = peer_pipe.process_batch(frames)
    assert [r.frame_index for r in results] == [0, 1]
    for r in results:
        assert r.frame_size == (108, 192) and r.seg.class_ids.shape == (108, 192), "seg at frame size"
        assert set(np.unique(r.seg.class_ids)) <= {0, 1, 2}
        assert {"preprocess", "inference", "postprocess"} == set(r.timings_ms)
        assert all(v > 0 for v in r.timings_ms.values()) and r.timings_ms["inference"] > r.timings_ms["postprocess"]
        assert r.letterbox.scale == 1.0 and r.letterbox.input_size == (108, 192)
        labels = np.asarray(r.detections.labels)
        assert labels.dtype == np.int32 and ((labels >= 0) & (labels < 4)).all()
        line = scene_to_json(r)
        assert sum(line["seg_area"].values()) == pytest.approx(1.0, abs=1e-3)
    assert peer_pipe.backend.description.endswith("2 peer models")


def test_peer_stage_split_predicts_what_predict_does(peer_pipe):
    """TwinLiteNet / NanoDet: predict == finish(run(preprocess)), and the bench's PeerPipeline gives the
    same seg and boxes as the evaluation's PeerStack.predict."""
    image = synthetic_frame(3, 320, 180)
    seg_net, det_net = peer_pipe.stack.seg, peer_pipe.stack.det
    seg_whole = seg_net.predict(image)
    seg_split = seg_net.finish(seg_net.run(seg_net.preprocess(image)), image.shape[:2])
    assert seg_split.seg.shape == (180, 320) and (seg_split.seg == seg_whole.seg).all()
    det_whole = det_net.predict(image)
    inputs, lb = det_net.preprocess(image)
    assert inputs.shape == (1, 3, 416, 416) and lb.frame_size == (180, 320)
    det_split = det_net.finish(det_net.run(inputs), lb)
    np.testing.assert_array_equal(det_split.boxes, det_whole.boxes)
    np.testing.assert_array_equal(det_split.scores, det_whole.scores)
    np.testing.assert_array_equal(det_split.labels, det_whole.labels)
    scene = peer_pipe(Frame(0, 0.0, image, "x"))
    stack = peer_pipe.stack.predict(image)
    assert (scene.seg.class_ids == stack.seg).all()
    np.testing.assert_array_equal(np.asarray(scene.detections.boxes_xyxy), stack.boxes)
    np.testing.assert_array_equal(np.asarray(scene.detections.labels), stack.labels)


def test_bench_with_peers_prints_the_ratio(fused_model, tmp_path, monkeypatch):
    peer_dir, _ = _peers_or_skip()
    monkeypatch.setenv("PERCEPTION_PEERS", str(peer_dir))
    clip = write_video(tmp_path / "two.mp4", n=2)  # the warm-up pass reads up to 20 frames: keep it at 2
    json_path = tmp_path / "bench.json"
    text = run_bench(
        str(clip),
        [str(fused_model)],
        runs=1,
        batch=2,
        max_frames=2,
        peers=True,
        json_path=json_path,
        log=lambda _m: None,
    )
    assert "fused.onnx: " in text and "x the peer stack's frames/s" in text
    ratio_line = next(line for line in text.splitlines() if line.endswith("x the peer stack's frames/s"))
    assert float(ratio_line.split(": ")[1].split("x")[0]) > 0
    assert "peers (TwinLiteNet + NanoDet-m)" in text and "2 peer models" in text
    data = json.loads(json_path.read_text())
    assert data["peers"]["name"] == "peers (TwinLiteNet + NanoDet-m)" and data["peers"]["fps_median"] > 0
    assert {"preprocess", "inference", "postprocess"} <= set(data["peers"]["stage_median_ms"])
