"""The package's layers hold: nothing imports upward, the runtime half never imports the torch half, and no
modules import each other round a cycle.

Every ``import`` and ``from ... import`` of every module under perception/ counts, those inside functions
too: a lazy import is still a dependency, it only runs later. A module may import modules of its own layer
and of the layers below it. The layers, lowest first (``LAYERS``):

- the runtime half, in data-flow order — what a vehicle computer runs with numpy, OpenCV and ONNX Runtime:
  foundation (errors, the frame values, configs, paths, progress) → camera model → sources → preprocess →
  runtime → postprocess → fusion → pipeline → sinks (and overlay drawing) → runner;
- offline, on top of it: data (datasets, the synthetic world) → baselines (the peer models and the COCO
  teachers, other people's ONNX models) → eval;
- the torch half (the ``train`` extra): nets (with ``runtime/torch_backend.py``, the one backend that needs
  the networks; the runtime's registry names it and imports it only when a checkpoint is run) → train →
  export;
- applications of the pipeline: calibration, bench, the live camera node, fleet;
- the command line, which may import anything and which nothing imports.

A module is in the layer of the longest prefix in ``LAYERS`` that names it (``perception.runtime`` holds
every runtime module but the torch backend). A new module outside every layer fails
``test_every_module_has_a_layer``: add it where it belongs in the flow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "perception"

# (layer, module prefixes), lowest first.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # -- the runtime half, in data-flow order --
    (
        "foundation",
        (
            "perception",
            "perception.errors",
            "perception.frames",
            "perception.config",
            "perception.paths",
            "perception.progress",
        ),
    ),  # fmt: skip
    ("camera model", ("perception.camera_model", "perception.camera_metadata")),
    ("sources", ("perception.sources",)),
    ("preprocess", ("perception.preprocess",)),
    ("runtime", ("perception.runtime",)),
    ("postprocess", ("perception.postprocess",)),
    ("fusion", ("perception.fusion",)),
    ("pipeline", ("perception.pipeline",)),
    ("sinks", ("perception.sinks", "perception.viz")),
    ("runner", ("perception.runner",)),
    # -- offline: data, other people's models, evaluation --
    ("data", ("perception.data",)),
    ("baselines", ("perception.peers", "perception.teachers")),
    ("eval", ("perception.eval",)),
    # -- the torch half --
    ("nets", ("perception.nets", "perception.runtime.torch_backend")),
    ("train", ("perception.train",)),
    ("export", ("perception.export",)),
    # -- applications of the pipeline, then the command line --
    ("applications", ("perception.calibration", "perception.bench", "perception.live", "perception.fleet")),
    ("cli", ("perception.cli", "perception.__main__")),
]
RUNTIME_HALF = {name for name, _ in LAYERS[: [n for n, _ in LAYERS].index("runner") + 1]}
TORCH_HALF = ("perception.nets", "perception.train", "perception.export", "perception.teachers",
              "perception.runtime.torch_backend")  # fmt: skip


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported perception module, line) for every import statement in the file, at any depth.

    ``from perception.x import y`` imports the module ``perception.x.y`` when there is one, else
    ``perception.x`` (y is a name in it); an import of a name that is no module resolves to the nearest
    enclosing module.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            if target != "perception" and not target.startswith("perception."):
                continue
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                found.append((target, node.lineno))
    return found


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = module_files()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def where(module: str, line: int) -> str:
    return f"{module_files()[module].relative_to(ROOT)}:{line}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module (each is an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def test_every_module_has_a_layer():
    missing = [m for m in module_files() if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {missing}"


def test_nothing_imports_upward():
    names = [n for n, _ in LAYERS]
    upward = []
    for module, deps in import_graph().items():
        mine = layer_of(module)
        for dep, line in deps:
            theirs = layer_of(dep)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{where(module, line)}: {module} ({names[mine]}) imports {dep} ({names[theirs]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_runtime_half_never_imports_the_torch_half():
    names = [n for n, _ in LAYERS]
    found = []
    for module, deps in import_graph().items():
        if names[layer_of(module)] not in RUNTIME_HALF:
            continue
        for dep, line in deps:
            if any(dep == t or dep.startswith(t + ".") for t in TORCH_HALF):
                found.append(f"{where(module, line)}: {module} imports {dep}")
    assert not found, "the runtime path reaches the torch half:\n" + "\n".join(found)


def test_no_import_cycles():
    graph = {m: {d for d, _ in deps} for m, deps in import_graph().items()}
    cycles = strongly_connected(graph)
    assert not cycles, "modules that import each other (directly or round a cycle):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y"]]
    assert strongly_connected({"x": {"y"}, "y": set()}) == []
