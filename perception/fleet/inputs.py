"""What a fleet run processes: videos and image folders, from a manifest, globs, paths or URLs.

A manifest is a CSV with a ``path`` column (optionally ``id`` and ``camera``: that drive's camera YAML,
for fleets of differently mounted cameras) or JSON lines with the same keys. Paths
may be local or any fsspec URL (``s3://``, ``gs://``, ``https://``, ...); remote files are copied to a
local cache before decoding (OpenCV reads local files). Each input gets a unique, file-system-safe id,
which names its output folder.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perception.errors import InputError
from perception.sources import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts")


@dataclass(frozen=True)
class FleetInput:
    """One drive. ``kind``: "video" or "images" (a folder of frames, sorted by name). ``camera``: its own
    camera YAML (lanes in metres, distances), overriding the pipeline config's; a local path."""

    id: str
    uri: str
    kind: str
    camera: str | None = None

    @property
    def is_remote(self) -> bool:
        return _scheme(self.uri) not in ("", "file")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "input"


def _kind_of(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    if any(name.endswith(s) for s in VIDEO_SUFFIXES):
        return "video"
    if _scheme(uri) in ("", "file") and Path(uri.removeprefix("file://")).is_dir():
        return "images"
    if "." not in name:
        return "images"  # a remote prefix without a suffix: a folder of frames
    raise InputError(f"{uri}: neither a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder of images")


def _read_manifest(path: Path) -> list[tuple[str, str | None, str, str | None]]:
    """(uri, id or None, where, camera or None) per row; relative paths are relative to the manifest."""
    rows: list[tuple[str, str | None, str, str | None]] = []
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"{path}: cannot read the manifest ({err.strerror})") from err
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise InputError(f"{path}: a CSV manifest needs a 'path' column (found: {reader.fieldnames})")
        for n, row in enumerate(reader, start=2):
            if not (row.get("path") or "").strip():
                raise InputError(f"{path}:{n}: empty path")
            ident = (row.get("id") or "").strip() or None
            rows.append((row["path"].strip(), ident, f"{path}:{n}", (row.get("camera") or "").strip() or None))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{n}: not JSON ({err.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
                raise InputError(f"{path}:{n}: each line must be an object with a 'path' string")
            rows.append((obj["path"], obj.get("id"), f"{path}:{n}", obj.get("camera")))
    out = []
    for uri, ident, where, camera in rows:
        if not _scheme(uri) and not os.path.isabs(uri):
            uri = str(path.parent / uri)
        if camera is not None:
            cam = Path(camera) if os.path.isabs(camera) else path.parent / camera
            if not cam.is_file():
                raise InputError(f"{where}: camera file {camera} not found")
            camera = str(cam.resolve())
        out.append((uri, ident, where, camera))
    return out


def _expand(spec: str) -> list[tuple[str, str | None, str, str | None]]:
    if any(c in spec for c in "*?[") and not spec.lower().endswith((".csv", ".jsonl", ".json")):
        if _scheme(spec) in ("", "file"):
            hits = sorted(glob.glob(spec.removeprefix("file://")))
        else:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(spec)
            proto = _scheme(spec)
            hits = sorted(p if "://" in p else f"{proto}://{p}" for p in paths)
        if not hits:
            raise InputError(f"{spec}: the pattern matches nothing")
        return [(h, None, spec, None) for h in hits]
    if spec.lower().endswith((".csv", ".jsonl", ".json")) and _scheme(spec) in ("", "file"):
        path = Path(spec.removeprefix("file://"))
        if not path.is_file():
            raise InputError(f"{spec}: manifest not found")
        return _read_manifest(path)
    return [(spec, None, spec, None)]


def gather_inputs(specs: Sequence[str]) -> list[FleetInput]:
    """Manifests, globs, paths and URLs → FleetInputs with unique ids, in the order given.

    Local inputs must exist (InputError naming the manifest line otherwise); remote ones are checked
    when they are fetched. The same file listed twice is kept once.
    """
    seen_uris: set[str] = set()
    used: set[str] = set()
    out: list[FleetInput] = []
    for spec in specs:
        for uri, ident, where, camera in _expand(spec):
            local = _scheme(uri) in ("", "file")
            if local:
                p = Path(uri.removeprefix("file://"))
                if not p.exists():
                    raise InputError(f"{where}: {uri}: no such file or folder")
                uri = str(p.resolve())
            if uri in seen_uris:
                continue
            seen_uris.add(uri)
            kind = _kind_of(uri)
            base = _safe_id(ident or Path(uri.rstrip("/")).stem)
            if ident is not None and base in used:
                raise InputError(f"{where}: id '{ident}' is used twice")
            name, n = base, 2
            while name in used:
                name = f"{base}_{n}"
                n += 1
            used.add(name)
            out.append(FleetInput(name, uri, kind, camera))
    if not out:
        raise InputError(f"no inputs in {', '.join(specs)}")
    return out


def local_copy(item: FleetInput, cache_dir: str | os.PathLike) -> Path:
    """A local path for ``item``: itself when local, else a copy in ``cache_dir`` (reused, written atomically)."""
    if not item.is_remote:
        return Path(item.uri.removeprefix("file://"))
    import fsspec

    key = hashlib.sha1(item.uri.encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"{item.id}-{key}"
    if target.exists():
        return target
    fs, _, (remote,) = fsspec.get_fs_token_paths(item.uri)
    tmp = Path(str(target) + ".part")
    try:
        if item.kind == "images":
            tmp.mkdir(parents=True, exist_ok=True)
            for f in sorted(fs.ls(remote, detail=False)):
                if f.lower().endswith(IMAGE_SUFFIXES):
                    fs.get(f, str(tmp / Path(f).name))
        else:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            fs.get(remote, str(tmp))
        os.replace(tmp, target)
    except (OSError, ValueError) as err:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise InputError(f"{item.uri}: cannot fetch ({err})") from err
    return target
