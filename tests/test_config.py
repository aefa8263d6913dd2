"""YAML config loading: defaults, type checks, error messages, shipped presets and camera files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.camera_model import CameraModel, Mounting, camera_from_dict, load_camera
from perception.config import (
    DEFAULT_PROVIDERS,
    BackendConfig,
    OutputConfig,
    PipelineConfig,
    PostprocessConfig,
    PreprocessConfig,
    RunnerConfig,
    from_dict,
    is_auto_camera,
    is_no_camera,
    load_config,
    resolve,
)
from perception.errors import ConfigError, PerceptionError

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------------
# Helpers


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def write_yaml(tmp_path: Path, data: object, name: str = "cfg.yaml") -> Path:
    return write(tmp_path, yaml.safe_dump(data), name)


def config_error(tmp_path: Path, data: object) -> str:
    """The message of the ConfigError that loading ``data`` (written as YAML) raises; it names the file."""
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "\n" not in msg  # one line for the user
    return msg


def yamls(folder: str) -> list:
    files = sorted([*(REPO / folder).glob("*.yaml"), *(REPO / folder).glob("*.yml")])
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no YAML under {folder}/ yet"))]
    return [pytest.param(f, id=f.name) for f in files]


CAMERA = {
    "name": "test_cam",
    "image_size": [1280, 720],
    "camera_matrix": [[800, 0, 640], [0, 810, 360], [0, 0, 1]],
    "dist_coeffs": [-0.3, 0.1, 0.001, -0.001, 0.0],
    "mounting": {"height_m": 1.5, "pitch_deg": 2},
}


def camera_dict(**changes) -> dict:
    data = {k: (list(map(list, v)) if k == "camera_matrix" else v) for k, v in CAMERA.items()}
    data.update(changes)
    return data


# --------------------------------------------------------------------------------------------------------
# PipelineConfig: defaults and conversions


def test_defaults():
    cfg = from_dict(PipelineConfig, {})
    assert cfg == PipelineConfig()
    assert cfg.model is None
    assert cfg.backend == BackendConfig() and cfg.backend.providers == DEFAULT_PROVIDERS
    assert cfg.preprocess == PreprocessConfig(camera="auto", undistort=False, roi=None)
    assert cfg.postprocess == PostprocessConfig()
    assert cfg.output == OutputConfig() and cfg.runner == RunnerConfig()
    assert cfg.runner.queue_size == 8


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == PipelineConfig()
    assert load_config(write(tmp_path, "# only a comment\n")) == PipelineConfig()


def test_nested_sections(tmp_path):
    path = write(
        tmp_path,
        """
model: models/m.onnx
backend:
  name: onnxruntime
  providers: [CPUExecutionProvider]
  threads: 4
preprocess:
  camera: ../camera/cam.yaml
  undistort: true
  roi: [0, 100, 1280, 500]
postprocess:
  score_threshold: 0.3
  iou_threshold: 0.5
  max_dets: 100
  class_agnostic: true
output:
  jsonl: false
  video_fourcc: avc1
  overlay_alpha: 0.5
runner:
  queue_size: 16
  progress: false
""",
    )
    cfg = load_config(path)
    assert cfg.model == "models/m.onnx"
    assert cfg.backend == BackendConfig("onnxruntime", ("CPUExecutionProvider",), 4, "cpu")
    assert cfg.preprocess == PreprocessConfig("../camera/cam.yaml", True, (0, 100, 1280, 500))
    assert cfg.postprocess == PostprocessConfig(0.3, 0.5, 100, True)
    assert cfg.output == OutputConfig(False, True, "avc1", 0.5)
    assert cfg.runner == RunnerConfig(16, False)


def test_partial_section_keeps_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "runner:\n  queue_size: 2\n"))
    assert cfg.runner == RunnerConfig(queue_size=2, progress=True)
    assert cfg.backend == BackendConfig()


def test_ints_accepted_for_floats():
    cfg = from_dict(
        PipelineConfig, {"postprocess": {"score_threshold": 0, "iou_threshold": 1}, "output": {"overlay_alpha": 1}}
    )
    assert cfg.postprocess.score_threshold == 0.0 and type(cfg.postprocess.score_threshold) is float
    assert cfg.postprocess.iou_threshold == 1.0 and type(cfg.postprocess.iou_threshold) is float
    assert type(cfg.output.overlay_alpha) is float


def test_lists_become_tuples():
    cfg = from_dict(PipelineConfig, {"backend": {"providers": ["A", "B"]}, "preprocess": {"roi": [1, 2, 3, 4]}})
    assert cfg.backend.providers == ("A", "B") and isinstance(cfg.backend.providers, tuple)
    assert cfg.preprocess.roi == (1, 2, 3, 4) and isinstance(cfg.preprocess.roi, tuple)
    assert from_dict(PipelineConfig, {"backend": {"providers": []}}).backend.providers == ()


def test_roi_as_4_ints_and_null(tmp_path):
    assert load_config(write(tmp_path, "preprocess:\n  roi: [0, 0, 640, 360]\n")).preprocess.roi == (0, 0, 640, 360)
    assert load_config(write(tmp_path, "preprocess:\n  roi: null\n")).preprocess.roi is None


def test_optional_fields_accept_null():
    cfg = from_dict(PipelineConfig, {"model": None, "postprocess": {"score_threshold": None, "max_dets": None}})
    assert cfg.model is None and cfg.postprocess.score_threshold is None and cfg.postprocess.max_dets is None


def test_configs_are_frozen():
    cfg = PipelineConfig()
    with pytest.raises(AttributeError):
        cfg.model = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------
# PipelineConfig: errors


def test_config_error_is_a_perception_error():
    assert issubclass(ConfigError, PerceptionError)


def test_unknown_top_level_key(tmp_path):
    msg = config_error(tmp_path, {"modle": "x.onnx"})
    assert "'modle'" in msg
    for key in ("model", "backend", "preprocess", "postprocess", "output", "runner"):
        assert key in msg


def test_unknown_nested_key(tmp_path):
    msg = config_error(tmp_path, {"preprocess": {"rio": [0, 0, 10, 10]}})
    assert "preprocess.rio" in msg
    assert "camera" in msg and "undistort" in msg and "roi" in msg  # the valid keys of that section


@pytest.mark.parametrize(
    "data, key, expected, got",
    [
        ({"runner": {"queue_size": "eight"}}, "runner.queue_size", "int", "'eight'"),
        ({"output": {"video": "yes"}}, "output.video", "bool", "'yes'"),
        ({"runner": {"queue_size": True}}, "runner.queue_size", "int", "True"),  # bool is not an int
        ({"backend": {"threads": False}}, "backend.threads", "int", "False"),
        ({"postprocess": {"max_dets": True}}, "postprocess.max_dets", "int", "True"),
        ({"output": {"overlay_alpha": True}}, "output.overlay_alpha", "float", "True"),
        ({"output": {"overlay_alpha": "0.5"}}, "output.overlay_alpha", "float", "'0.5'"),
        ({"runner": {"queue_size": 8.0}}, "runner.queue_size", "int", "8.0"),  # float is not an int
        ({"runner": {"progress": 1}}, "runner.progress", "bool", "1"),
        ({"model": 3}, "model", "str", "3"),
        ({"preprocess": {"roi": [0, 0, 10]}}, "preprocess.roi", "list of 4 int", "[0, 0, 10]"),
        ({"preprocess": {"roi": [0, 0, 10, 10, 1]}}, "preprocess.roi", "list of 4 int", "[0, 0, 10, 10, 1]"),
        ({"preprocess": {"roi": [0, 0, 10.5, 10]}}, "preprocess.roi", "list of 4 int", "10.5"),
        ({"preprocess": {"roi": "0,0,10,10"}}, "preprocess.roi", "list of 4 int", "'0,0,10,10'"),
        ({"backend": {"providers": "CPUExecutionProvider"}}, "backend.providers", "list of str", "'CPUExecution"),
        ({"runner": 8}, "runner", "mapping", "8"),
        ({"backend": None}, "backend", "mapping", "None"),
    ],
)
def test_wrong_type_message(tmp_path, data, key, expected, got):
    msg = config_error(tmp_path, data)
    assert f"'{key}'" in msg
    assert expected in msg
    assert got in msg


def test_roi_with_3_values_names_the_problem(tmp_path):
    msg = config_error(tmp_path, {"preprocess": {"roi": [1, 2, 3]}})
    assert "preprocess.roi" in msg and "4" in msg


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "runner: [unclosed\n  queue_size: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unreadable_path_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a folder
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str")])
def test_top_level_must_be_mapping(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="top level must be a mapping") as info:
        load_config(path)
    assert str(path) in str(info.value) and kind in str(info.value)


def test_from_dict_source_and_other_class():
    with pytest.raises(ConfigError, match=r"^<mine>: unknown key 'x'"):
        from_dict(RunnerConfig, {"x": 1}, "<mine>")
    assert from_dict(RunnerConfig, {"queue_size": 3}) == RunnerConfig(3)


def test_load_config_with_another_class(tmp_path):
    assert load_config(write(tmp_path, "queue_size: 3\n"), RunnerConfig) == RunnerConfig(3)


# --------------------------------------------------------------------------------------------------------
# resolve


def test_resolve(tmp_path):
    cfg_file = tmp_path / "configs" / "pipeline" / "a.yaml"
    assert resolve("../camera/c.yaml", cfg_file) == str(tmp_path / "configs" / "pipeline" / "../camera/c.yaml")
    assert Path(resolve("../camera/c.yaml", cfg_file)).resolve() == (tmp_path / "configs" / "camera" / "c.yaml")
    assert resolve("c.yaml", "a.yaml") == "c.yaml"  # config file in the working directory
    absolute = str(tmp_path / "abs.yaml")
    assert resolve(absolute, cfg_file) == absolute
    assert resolve(None, cfg_file) is None
    assert resolve("rel.yaml", None) == "rel.yaml"
    assert os.path.isabs(resolve("x.onnx", cfg_file))


# --------------------------------------------------------------------------------------------------------
# Shipped presets


@pytest.mark.parametrize("path", yamls("configs/pipeline"))
def test_shipped_pipeline_config_loads(path):
    cfg = load_config(path, PipelineConfig)
    assert isinstance(cfg, PipelineConfig)
    keyword = is_auto_camera(cfg.preprocess.camera) or is_no_camera(cfg.preprocess.camera)
    camera = None if keyword else resolve(cfg.preprocess.camera, path)
    if camera is not None:
        assert Path(camera).is_file(), f"{path}: preprocess.camera {cfg.preprocess.camera} not found"
        load_camera(camera)
    if cfg.preprocess.undistort:
        assert camera is not None, f"{path}: undistort needs preprocess.camera"


@pytest.mark.parametrize("path", yamls("configs/cameras"))
def test_shipped_camera_loads(path):
    cam = load_camera(path)
    assert isinstance(cam, CameraModel)
    w, h = cam.image_size
    assert w > 0 and h > 0
    fx, fy = cam.K[0, 0], cam.K[1, 1]
    cx, cy = cam.K[0, 2], cam.K[1, 2]
    assert 0 < cx < w and 0 < cy < h
    assert fx > 0 and fy > 0


# --------------------------------------------------------------------------------------------------------
# camera.py


def test_load_camera(tmp_path):
    cam = load_camera(write_yaml(tmp_path, camera_dict()))
    assert cam.name == "test_cam"
    assert cam.image_size == (1280, 720)
    assert cam.camera_matrix == ((800.0, 0.0, 640.0), (0.0, 810.0, 360.0), (0.0, 0.0, 1.0))
    assert cam.dist_coeffs == (-0.3, 0.1, 0.001, -0.001, 0.0)
    assert cam.mounting == Mounting(height_m=1.5, pitch_deg=2.0)
    assert cam.K.dtype == np.float64 and cam.K.shape == (3, 3)
    assert cam.D.dtype == np.float64 and cam.D.shape == (5,)
    np.testing.assert_array_equal(cam.K, [[800, 0, 640], [0, 810, 360], [0, 0, 1]])


def test_camera_defaults_and_to_dict_round_trip(tmp_path):
    data = {k: v for k, v in camera_dict().items() if k in ("image_size", "camera_matrix")}
    cam = load_camera(write_yaml(tmp_path, data))
    assert cam.dist_coeffs == () and cam.name == "camera" and cam.mounting == Mounting()
    full = load_camera(write_yaml(tmp_path, camera_dict(), "full.yaml"))
    assert load_camera(write_yaml(tmp_path, full.to_dict(), "again.yaml")) == full
    assert camera_from_dict(full.to_dict()) == full


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"camera_matrix": [[0, 0, 640], [0, 810, 360], [0, 0, 1]]}, "fx, fy > 0"),
        ({"camera_matrix": [[-800, 0, 640], [0, 810, 360], [0, 0, 1]]}, "fx, fy > 0"),
        ({"camera_matrix": [[800, 0, 640], [0, 0, 360], [0, 0, 1]]}, "fx, fy > 0"),
        ({"camera_matrix": [[800, 0, 640], [0, 810, 360], [0.1, 0, 1]]}, "camera_matrix"),
        ({"camera_matrix": [[800, 0, 640], [0, 810, 360], [0, 0.1, 1]]}, "camera_matrix"),
        ({"camera_matrix": [[800, 0, 640], [1, 810, 360], [0, 0, 1]]}, "camera_matrix"),
        ({"camera_matrix": [[800, 0, 640], [0, 810, 360], [0, 0, 2]]}, "camera_matrix"),
        ({"dist_coeffs": [0.1, 0.2, 0.3]}, "dist_coeffs"),
        ({"dist_coeffs": [0.0] * 6}, "dist_coeffs"),
        ({"camera_matrix": [[800, 0, 640], [0, 810, 360]]}, "camera_matrix"),  # 2 rows
        ({"camera_matrix": [[800, 0], [0, 810], [0, 0]]}, "camera_matrix"),
        ({"image_size": [1280]}, "image_size"),
        ({"dist_coeffs": ["a", 0, 0, 0]}, "dist_coeffs"),
        ({"mounting": {"hight_m": 1.0}}, "mounting.hight_m"),
        ({"focal": 800}, "focal"),
    ],
)
def test_bad_camera_raises_config_error_naming_file(tmp_path, changes, match):
    path = write_yaml(tmp_path, camera_dict(**changes))
    with pytest.raises(ConfigError, match=match) as info:
        load_camera(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("n", [0, 4, 5, 8, 12, 14])
def test_valid_dist_coeff_lengths(tmp_path, n):
    cam = load_camera(write_yaml(tmp_path, camera_dict(dist_coeffs=[0.01] * n)))
    assert len(cam.dist_coeffs) == n


@pytest.mark.parametrize("missing", ["camera_matrix", "image_size", "all"])
def test_camera_missing_required_key_is_config_error(tmp_path, missing):
    data = {} if missing == "all" else {k: v for k, v in camera_dict().items() if k != missing}
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_camera(path)
    assert str(path) in str(info.value)


def test_camera_from_dict_errors():
    with pytest.raises(ConfigError, match="<cam>"):
        camera_from_dict(camera_dict(dist_coeffs=[1, 2, 3]), "<cam>")
    with pytest.raises(ConfigError, match="<cam>: unknown key 'focal'"):
        camera_from_dict(camera_dict(focal=1), "<cam>")


def test_scaled_to_scales_intrinsics():
    cam = camera_from_dict(camera_dict(camera_matrix=[[800, 0, 640], [0, 810, 360], [0, 0, 1]]))
    small = cam.scaled_to(960, 540)
    assert small.image_size == (960, 540)
    # Principal point scales about the pixel-centre convention: (c + 0.5) * s - 0.5.
    np.testing.assert_allclose(small.K, [[600, 0, 479.875], [0, 607.5, 269.875], [0, 0, 1]])
    assert small.dist_coeffs == cam.dist_coeffs  # distortion is resolution independent
    assert small.name == cam.name and small.mounting == cam.mounting
    assert cam.scaled_to(1280, 720) is cam
    big = cam.scaled_to(1920, 1080)
    np.testing.assert_allclose(big.K, [[1200, 0, 960.25], [0, 1215, 540.25], [0, 0, 1]])
    assert cam.image_size == (1280, 720)  # the original is unchanged
    np.testing.assert_array_equal(cam.K, [[800, 0, 640], [0, 810, 360], [0, 0, 1]])


@pytest.mark.parametrize("size", [(640, 480), (1280, 960), (720, 1280)])
def test_scaled_to_refuses_other_aspect_ratio(size):
    cam = camera_from_dict(camera_dict())
    with pytest.raises(ValueError, match="aspect ratio"):
        cam.scaled_to(*size)


def test_default_preset_matches_dataclass_defaults():
    path = REPO / "configs" / "pipeline" / "default.yaml"
    if not path.is_file():
        pytest.skip("configs/pipeline/default.yaml not added yet")
    assert load_config(path) == PipelineConfig()
    data = yaml.safe_load(path.read_text())
    cfg = PipelineConfig()
    for section, value in vars(cfg).items():
        assert section in data, f"default.yaml lacks '{section}'"
        if hasattr(value, "__dataclass_fields__"):
            assert set(data[section]) == set(vars(value)), f"default.yaml '{section}' does not list every key"


# --------------------------------------------------------------------------------------------------------
# Literal choices and value ranges, checked at load


@pytest.mark.parametrize(
    "data, key, bad, valid",
    [
        ({"backend": {"name": "onnx"}}, "backend.name", "'onnx'", ["'auto'", "'onnxruntime'", "'torch'", "'tensorrt'"]),
        ({"backend": {"name": "ONNXRuntime"}}, "backend.name", "'ONNXRuntime'", ["'onnxruntime'"]),
        ({"backend": {"device": "gpu"}}, "backend.device", "'gpu'", ["cpu", "cuda", "cuda:N"]),
        ({"backend": {"device": "cuda:"}}, "backend.device", "'cuda:'", ["cuda:N"]),
        ({"output": {"video_fourcc": "h264x"}}, "output.video_fourcc", "'h264x'", ["4 characters"]),
    ],
)
def test_value_not_among_the_valid_ones(tmp_path, data, key, bad, valid):
    msg = config_error(tmp_path, data)
    assert f"'{key}'" in msg and bad in msg
    for v in valid:
        assert v in msg


def test_literal_value_must_have_its_type(tmp_path):
    msg = config_error(tmp_path, {"backend": {"name": 1}})
    assert "'backend.name'" in msg and "'auto'" in msg and "1" in msg


@pytest.mark.parametrize("name", ["auto", "onnxruntime", "torch", "tensorrt"])
def test_every_backend_name_loads(name):
    assert from_dict(PipelineConfig, {"backend": {"name": name}}).backend.name == name


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_torch_devices_load(device):
    assert from_dict(PipelineConfig, {"backend": {"device": device}}).backend.device == device


def test_backend_names_are_the_registry_ones():
    """The Literal lists exactly the backends ``build_backend`` knows, plus "auto"."""
    import typing

    from perception.config import BackendName
    from perception.runtime import BACKENDS

    assert set(typing.get_args(BackendName)) == {"auto", *BACKENDS}


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"postprocess": {"score_threshold": 1.5}}, "postprocess.score_threshold", "in [0, 1]"),
        ({"postprocess": {"score_threshold": -0.1}}, "postprocess.score_threshold", "in [0, 1]"),
        ({"postprocess": {"iou_threshold": 2}}, "postprocess.iou_threshold", "in [0, 1]"),
        ({"postprocess": {"max_dets": 0}}, "postprocess.max_dets", ">= 1"),
        ({"preprocess": {"roi": [0, 0, 0, 10]}}, "preprocess.roi[2]", ">= 1"),
        ({"preprocess": {"roi": [-1, 0, 10, 10]}}, "preprocess.roi[0]", ">= 0"),
        ({"backend": {"threads": -1}}, "backend.threads", ">= 0"),
        ({"fusion": {"vehicle_width_m": 0}}, "fusion.vehicle_width_m", "> 0"),
        ({"fusion": {"fcw_ttc_s": -1.0}}, "fusion.fcw_ttc_s", "> 0"),
        ({"fusion": {"fcw_frames": 0}}, "fusion.fcw_frames", ">= 1"),
        ({"fusion": {"track_high_score": 1.2}}, "fusion.track_high_score", "in [0, 1]"),
        ({"fusion": {"track_min_hits": 0}}, "fusion.track_min_hits", ">= 1"),
        ({"fusion": {"lane_hold_s": -0.5}}, "fusion.lane_hold_s", ">= 0"),
        ({"output": {"overlay_alpha": 1.01}}, "output.overlay_alpha", "in [0, 1]"),
        ({"output": {"overlay_alpha": float("nan")}}, "output.overlay_alpha", "in [0, 1]"),
        ({"runner": {"queue_size": 0}}, "runner.queue_size", ">= 1"),  # 0 would make the queue unbounded
        ({"runner": {"batch_size": 0}}, "runner.batch_size", ">= 1"),
        ({"live": {"max_age_ms": 0}}, "live.max_age_ms", "> 0"),
        ({"live": {"log_keep": 0}}, "live.log_keep", ">= 1"),
        ({"live": {"preview_quality": 101}}, "live.preview_quality", "in [0, 100]"),
    ],
)
def test_value_out_of_range(tmp_path, data, key, expected):
    msg = config_error(tmp_path, data)
    assert f"'{key}' must be {expected}, got" in msg


def test_range_bounds_are_inclusive_where_stated():
    cfg = from_dict(
        PipelineConfig,
        {
            "postprocess": {"score_threshold": 0, "iou_threshold": 1, "max_dets": 1},
            "output": {"overlay_alpha": 0.0},
            "fusion": {"ldw_trigger_m": -0.2, "lane_hold_s": 0},  # a negative trigger warns past the line
            "preprocess": {"roi": [0, 0, 1, 1]},
        },
    )
    assert cfg.postprocess.score_threshold == 0.0 and cfg.postprocess.iou_threshold == 1.0
    assert cfg.fusion.ldw_trigger_m == -0.2 and cfg.preprocess.roi == (0, 0, 1, 1)


def test_camera_stays_a_free_string():
    for camera in ("auto", "none", "AUTO", "../cameras/mine.yaml", None):
        assert from_dict(PipelineConfig, {"preprocess": {"camera": camera}}).preprocess.camera == camera


def test_range_and_pattern_describe_themselves():
    from perception.config import MultipleOf, Pattern, Range

    assert Range(ge=0, le=1).describe() == "in [0, 1]"
    assert Range(gt=0, lt=1.5).describe() == "in (0, 1.5)"
    assert Range(ge=0, lt=1).describe() == "in [0, 1)"
    assert Range(gt=0).describe() == "> 0" and Range(ge=1).describe() == ">= 1"
    assert Range(le=3).describe() == "<= 3" and Range(lt=-1).describe() == "< -1"
    assert Range(ge=0).contains(0) and not Range(gt=0).contains(0) and not Range(ge=0).contains(float("nan"))
    assert Pattern(r"a|b", "a or b").contains("a") and not Pattern(r"a|b", "a or b").contains("ab")
    assert MultipleOf(32).contains(64) and not MultipleOf(32).contains(100)
    assert MultipleOf(32).describe() == "a multiple of 32"


def test_check_config_checks_values_set_in_code():
    """Command-line overrides go through ``dataclasses.replace``; ``check_config`` applies the load checks."""
    import dataclasses

    from perception.config import check_config

    cfg = PipelineConfig()
    assert check_config(cfg) is cfg
    assert check_config(load_config(REPO / "configs" / "pipeline" / "solidwhiteright.yaml"))
    bad = dataclasses.replace(cfg, postprocess=dataclasses.replace(cfg.postprocess, score_threshold=1.5))
    with pytest.raises(ConfigError, match=r"^command line: 'postprocess.score_threshold' must be in \[0, 1\]"):
        check_config(bad, "command line")
    with pytest.raises(ConfigError, match="'backend.name' must be one of"):
        check_config(dataclasses.replace(cfg, backend=BackendConfig(name="onnx")))  # type: ignore[arg-type]
