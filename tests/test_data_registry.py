"""Dataset registry: kinds by name, lazy import, KIND:PATH specs, unknown names listing the valid ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_data_camvid import make_camvid

from perception.data.base import Dataset
from perception.data.camvid import CamVidDataset
from perception.data.classmap import load_class_map
from perception.data.registry import DATASET_KINDS, build_dataset, dataset_class, parse_data_spec
from perception.data.sample import DatasetError
from perception.errors import ConfigError

ALL_KINDS = ["bdd100k", "camvid", "cityscapes", "coco", "synthetic", "tusimple", "yolo"]


def test_kinds_are_module_and_class_names():
    assert sorted(DATASET_KINDS) == ALL_KINDS
    assert DATASET_KINDS["coco"] == ("perception.data.coco", "CocoDataset")
    assert DATASET_KINDS["synthetic"] == ("perception.data.folder", "FolderDataset")
    for module, cls in DATASET_KINDS.values():
        assert module.startswith("perception.data.") and cls.isidentifier()


@pytest.mark.parametrize("kind", ["camvid", "cityscapes", "bdd100k"])
def test_own_kinds_resolve_to_their_class(kind):
    cls = dataset_class(kind)
    assert issubclass(cls, Dataset) and cls.kind == kind


def test_build_camvid_with_kwargs_and_class_map_path(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ds = build_dataset("camvid", root, split="val", min_area=1)
    assert isinstance(ds, CamVidDataset) and len(ds) == 2 and ds.split == "val"
    assert ds[0].labels.tolist() == [0, 0, 1, 2, 3]
    yaml_path = tmp_path / "only_cars.yaml"
    yaml_path.write_text("seg:\n  default: background\ndet:\n  classes: {8: car}\n")
    ds = build_dataset("camvid", root, class_map=str(yaml_path), min_area=1)
    assert ds[0].labels.tolist() == [0, 0]
    ds = build_dataset("camvid", root, class_map=load_class_map("camvid"), bad_boxes="drop")
    assert ds.bad_boxes == "drop"


def test_unknown_kind_lists_valid_kinds(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown dataset kind 'kitti' \(valid: \['bdd100k', 'camvid'"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(ConfigError, match="cannot read class map"):
        build_dataset("camvid", tmp_path, class_map=tmp_path / "missing.yaml")


def test_parse_data_spec():
    assert parse_data_spec("camvid:../shared/data/camvid") == ("camvid", "../shared/data/camvid")
    assert parse_data_spec("coco:/d/a:b") == ("coco", "/d/a:b")  # only the first colon splits
    with pytest.raises(ConfigError, match=r"no kind prefix: write KIND:PATH, e.g. camvid:../shared/data/camvid"):
        parse_data_spec("../shared/data/camvid")
    with pytest.raises(ConfigError, match="no kind prefix"):
        parse_data_spec("./data:x/y")
    with pytest.raises(ConfigError, match=r"unknown dataset kind 'kitti' in 'kitti:/d' \(valid: "):
        parse_data_spec("kitti:/d")
    with pytest.raises(ConfigError, match="has no path after camvid:"):
        parse_data_spec("camvid:")


def test_listing_kinds_imports_no_loader():
    code = (
        "import sys; from perception.data.registry import DATASET_KINDS, parse_data_spec\n"
        "parse_data_spec('coco:/x')\n"
        "assert not any(m in sys.modules for m in ('perception.data.coco', 'perception.data.camvid')), sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("kind", ["coco", "yolo", "synthetic"])
def test_other_kinds_build_when_installed(kind, tmp_path):
    pytest.importorskip(DATASET_KINDS[kind][0])
    cls = dataset_class(kind)
    assert issubclass(cls, Dataset) and cls.__name__ == DATASET_KINDS[kind][1]
    with pytest.raises(DatasetError, match="nowhere"):  # every loader names a missing root
        build_dataset(kind, tmp_path / "nowhere")


def test_every_builtin_class_map_ships_with_the_package():
    """`pip install .` copies configs/datasets/*.yaml to share/; a new class map must be listed there too."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    repo = Path(__file__).resolve().parent.parent
    data_files = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = set(data_files["share/perception/configs/datasets"])
    on_disk = {f"configs/datasets/{p.name}" for p in (repo / "configs" / "datasets").glob("*.yaml")}
    assert shipped == on_disk
