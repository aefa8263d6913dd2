"""`perception export --provenance FILE.yaml`: the file is checked, lands in the contract of the FP32 and the
INT8 export, survives a round trip and `perception inspect`; a bad file is a one-line error naming it.

A tiny random net at 64x96 keeps each export under a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import write_video

from perception.cli import main
from perception.errors import ConfigError
from perception.export.provenance import load_provenance
from perception.export.random_model import random_net_and_contract
from perception.nets.checkpoints import save_model_checkpoint
from perception.runtime.contract import ModelContract
from perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

REPO = Path(__file__).resolve().parents[1]
CPU = ("CPUExecutionProvider",)
PROVENANCE = {
    "init": [{"name": "YOLOX-Nano COCO release", "by": "Megvii", "source": "yolox.onnx", "licence": "Apache-2.0"}],
    "datasets": [{"name": "CamVid", "split": "train", "licence": "CC BY-NC 4.0", "note": "mask-component boxes"}],
    "teachers": [{"name": "YOLOX-Nano", "licence": "Apache-2.0"}],
    "use": "non-commercial research",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A raw-format checkpoint, as the training engine writes them, of the tiny random net."""
    net, contract, kwargs = random_net_and_contract(input_size=(64, 96), format="raw")
    return save_model_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", net, contract, "tiny", kwargs)


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_export_stores_the_provenance_and_inspect_prints_it(capsys, checkpoint, tmp_path):
    prov = _write(tmp_path / "prov.yaml", PROVENANCE)
    out = tmp_path / "m.onnx"
    code, text, err = _cli(capsys, "export", str(checkpoint), "--out", str(out), "--provenance", str(prov))
    assert code == 0, err
    assert f"provenance from {prov}" in text
    contract = OnnxRuntimeBackend(out, providers=CPU).contract
    assert contract.extra["provenance"] == PROVENANCE
    assert contract.trained_on == ("nothing: random weights",), "the checkpoint's own record stays"
    assert ModelContract.from_json(contract.to_json()) == contract
    code, text, err = _cli(capsys, "inspect", str(out))
    assert code == 0, err
    assert json.loads(text)["provenance"] == PROVENANCE


def test_int8_export_keeps_the_provenance(capsys, checkpoint, tmp_path):
    prov = _write(tmp_path / "prov.yaml", PROVENANCE)
    video = write_video(tmp_path / "calib.mp4", n=4)
    out = tmp_path / "m.int8.onnx"
    argv = ["export", str(checkpoint), "--out", str(out), "--format", "onnx-int8", "--provenance", str(prov)]
    code, _, err = _cli(capsys, *argv, "--calib", str(video), "--calib-frames", "4")
    assert code == 0, err
    contract = OnnxRuntimeBackend(out, providers=CPU).contract
    assert contract.extra["provenance"] == PROVENANCE and "quantization" in contract.extra


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({**PROVENANCE, "licences": "x"}, "unknown key 'licences' (valid keys: init, datasets, teachers, use)"),
        ({"teachers": [{"name": "PP-PicoDet-XS"}]}, "'teachers[0]' (PP-PicoDet-XS) has no 'licence'"),
        ({"init": [{"name": "a", "license": "MIT"}]}, "'init[0]' (a) has no 'licence' (spelt 'licence', not"),
        ({"datasets": [{"licence": "MIT"}]}, "'datasets[0]' has no 'name'"),
        ({"datasets": [{"name": "a", "licence": "MIT", "frames": True}]}, "'datasets[0].frames' must be a non-empty"),
        ({"datasets": [{"name": "a", "licence": ""}]}, "'datasets[0].licence' must be a non-empty string"),
        ({"datasets": {"name": "a", "licence": "MIT"}}, "'datasets' must be a list of mappings, got dict"),
        ({"teachers": ["YOLOX-Nano"]}, "'teachers[0]' must be a mapping with name and licence, got 'YOLOX-Nano'"),
        ({"use": ["research"]}, "'use' must be a non-empty string, got list"),
        ("init: [{name: a, licence: MIT}\n", "not valid YAML"),
        ("- a\n- b\n", "provenance must be a mapping with keys init, datasets, teachers, use; got list"),
        ("", "got nothing"),
    ],
)
def test_bad_provenance_is_a_config_error_naming_the_file(tmp_path, content, message):
    path = _write(tmp_path / "bad.yaml", content)
    with pytest.raises(ConfigError) as err:
        load_provenance(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_export_with_a_bad_provenance_file_fails_before_writing(capsys, checkpoint, tmp_path):
    bad = _write(tmp_path / "bad.yaml", {"teachers": [{"name": "YOLOX-Nano"}]})
    out = tmp_path / "m.onnx"
    code, _, err = _cli(capsys, "export", str(checkpoint), "--out", str(out), "--provenance", str(bad))
    assert code == 1
    assert _one_error_line(err) == f"error: {bad}: 'teachers[0]' (YOLOX-Nano) has no 'licence'"
    assert not out.exists()
    missing = tmp_path / "missing.yaml"
    code, _, err = _cli(capsys, "export", str(checkpoint), "--out", str(out), "--provenance", str(missing))
    assert code == 1 and _one_error_line(err) == f"error: {missing}: provenance file not found"


def test_the_shipped_models_provenance_loads():
    prov = load_provenance(REPO / "configs" / "models" / "default_provenance.yaml")
    assert [e["name"] for e in prov["init"]] == ["YOLOX-Nano COCO release"]
    assert [e["name"] for e in prov["teachers"]] == ["YOLOX-Nano", "PP-PicoDet-XS", "Yolo-Fastest-1.1-XL"]
    licences = {e["name"]: e["licence"] for e in prov["datasets"]}
    assert licences["CamVid"] == "CC BY-NC 4.0" and "non-commercial" in prov["use"]
    assert set(licences) == {
        "synthetic world",
        "synthetic world at night and in rain",
        "CamVid",
        "Udacity CarND highway frames",
    }


@pytest.mark.parametrize("name", ["default.onnx", "default.int8.onnx"])
def test_the_shipped_files_carry_the_provenance_file_as_it_is(name):
    contract = OnnxRuntimeBackend(REPO / "models" / name).contract
    assert contract.extra["provenance"] == load_provenance(REPO / "configs" / "models" / "default_provenance.yaml")


def test_counts_may_be_written_as_numbers_and_are_kept_as_text(tmp_path):
    path = _write(tmp_path / "p.yaml", {"datasets": [{"name": "CamVid", "licence": "CC BY-NC 4.0", "frames": 367}]})
    assert load_provenance(path)["datasets"][0]["frames"] == "367"
