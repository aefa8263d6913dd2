"""A model's provenance: the weights it started from, the teachers that labelled its data, the datasets, each
with its licence, and the use those licences allow.

``perception export --provenance FILE.yaml`` checks the file here and stores it in the contract as
``extra["provenance"]``, so the model file itself says what it was built from (``perception inspect``
prints it) instead of a model card beside it that can be lost. The format::

    init: [{name: YOLOX-Nano COCO release, source: ../shared/weights/yolox_nano_coco_416.onnx, licence: Apache-2.0}]
    datasets: [{name: CamVid, split: train, licence: CC BY-NC 4.0}]
    teachers: [{name: YOLOX-Nano, licence: Apache-2.0}]
    use: non-commercial research (CamVid train is CC BY-NC 4.0)

Every key is optional but at least one must be there. ``init``, ``datasets`` and ``teachers`` are lists of
mappings, each with a non-empty ``name`` and ``licence`` and any other fields as strings; ``use`` is a
string. Anything else raises ConfigError naming the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from perception.errors import ConfigError

SECTIONS = ("init", "datasets", "teachers")
KEYS = (*SECTIONS, "use")
REQUIRED = ("name", "licence")


def load_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The checked provenance of a YAML file, as the contract stores it; ConfigError naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: provenance file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read provenance file ({getattr(err, 'strerror', None) or err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    return provenance_from_dict(data, str(path))


def provenance_from_dict(data: Any, source: str = "<provenance>") -> dict[str, Any]:
    """Check ``data`` (parsed YAML) and return it with its keys in the order of ``KEYS``."""
    if not isinstance(data, dict) or not data:
        got = "nothing" if not data else type(data).__name__
        raise ConfigError(f"{source}: provenance must be a mapping with keys {', '.join(KEYS)}; got {got}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (valid keys: {', '.join(KEYS)})")
    out: dict[str, Any] = {}
    for section in SECTIONS:
        if section in data:
            out[section] = _entries(data[section], section, source)
    if "use" in data:
        out["use"] = _text(data["use"], "use", source)
    return out


def _entries(value: Any, section: str, source: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: '{section}' must be a list of mappings, got {_kind(value)}")
    entries = []
    for i, entry in enumerate(value):
        where = f"{section}[{i}]"
        if not isinstance(entry, dict):
            need = " and ".join(REQUIRED)
            raise ConfigError(f"{source}: '{where}' must be a mapping with {need}, got {_kind(entry)}")
        for key in REQUIRED:
            if key not in entry:
                named = f" ({entry['name']})" if isinstance(entry.get("name"), str) else ""
                # the licence field is spelt the British way; say so rather than only "missing"
                hint = " (spelt 'licence', not 'license')" if key == "licence" and "license" in entry else ""
                raise ConfigError(f"{source}: '{where}'{named} has no '{key}'{hint}")
        entries.append({str(k): _text(_count(v), f"{where}.{k}", source) for k, v in entry.items()})
    return entries


def _count(value: Any) -> Any:
    """A number (``frames: 367``) is kept as its text; everything in the block is text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _text(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: '{key}' must be a non-empty string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
