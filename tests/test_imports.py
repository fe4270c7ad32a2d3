"""The import structure of ``cytolt/``: every module imports on its own, the import graph has no cycle, and the
framework boundaries of docs/ARCHITECTURE hold (mmdet/mmengine/mmcv only under ``cytolt/mm``, napari/Qt nowhere).

The graph is read from the source (``ast``), so it sees what running code may not: imports inside functions count
as edges (a function-local import hides a cycle, it does not break it); only imports under ``if TYPE_CHECKING:``
are left out, since they never run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cytolt"
# Third-party packages by where they may be imported (docs/ARCHITECTURE.md, "Boundaries").
FRAMEWORK = {"mmdet", "mmengine", "mmcv"}  # under cytolt/mm only
VIEWER = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy"}  # nowhere in cytolt
# ``python -m cytolt`` runs the CLI on import; it is in the graph but not imported here.
NOT_IMPORTED = {"cytolt.__main__"}
# Imported once by the parent of the isolation run, never by cytolt's own modules first: each module is then
# imported in a forked child, so it pays only for its own cytolt imports (about 0.1 s instead of a fresh
# interpreter's seconds of torch + mmdet). None of these imports cytolt.
HEAVY = (
    "numpy",
    "torch",
    "torchvision",
    "cv2",
    "scipy.stats",
    "skimage",
    "tifffile",
    "zarr",
    "imagecodecs",
    "openslide",
    "pycocotools.coco",
    "albumentations",
    "matplotlib",
    "jinja2",
    "click",
    "dask.distributed",
    "mmengine.runner",
    "mmcv.ops",
    "mmdet.models",
    "mmdet.datasets",
    "mmdet.apis",
)


@dataclass(frozen=True)
class Import:
    """One import statement of a cytolt module: what it names (resolved to a cytolt module when it is one)."""

    source: str  # importing module, e.g. 'cytolt.io.stream'
    target: str  # imported module: 'cytolt.io.backends', or a third-party name such as 'torch.nn'
    line: int


def module_names() -> dict[str, Path]:
    """Every module of cytolt: dotted name -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """``name`` itself when it is a cytolt module, else its longest prefix that is one (``pkg.attr`` -> ``pkg``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def imports_of(module: str, modules: dict[str, Path]) -> list[Import]:
    """Every import in ``module`` that can run: at module level or inside functions, not under TYPE_CHECKING.

    ``from pkg import name`` is an import of ``pkg.name`` when that is a submodule, else of ``pkg``.
    """
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, _resolve(alias.name, modules), child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in modules else _resolve(base, modules)
                    found.append(Import(module, target, child.lineno))
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """cytolt module -> {cytolt module it imports: first line that does}."""
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module in modules:
        for imp in imports_of(module, modules):
            if imp.target in modules and imp.target != module:
                graph[module].setdefault(imp.target, imp.line)
    return graph


def strongly_connected_components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components of more than one module, each sorted, sorted by first name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return sorted(out)


def test_the_import_graph_has_no_cycle() -> None:
    modules = module_names()
    graph = import_graph(modules)
    components = strongly_connected_components(graph)
    lines = []
    for component in components:
        lines.append(f"cycle among {len(component)} modules:")
        members = set(component)
        for source in component:
            for target, line in sorted(graph[source].items()):
                if target in members:
                    lines.append(f"    {source} -> {target}  ({modules[source].relative_to(ROOT)}:{line})")
    assert not components, "\n".join(lines)


def test_the_graph_check_sees_hidden_and_relative_imports(tmp_path: Path) -> None:
    # A two-module package whose cycle hides in a function, plus an import that only type checkers run.
    pkg = tmp_path / "cytolt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cytolt import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cytolt import c\n"
        "def f():\n    from .a import x\n"
    )
    (pkg / "c.py").write_text("import cytolt.a\n")
    modules = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in pkg.glob("*.py")
    }
    graph = import_graph(modules)
    assert graph["cytolt.a"] == {"cytolt.b": 1}
    assert graph["cytolt.b"] == {"cytolt.a": 5}  # the TYPE_CHECKING import of c is no edge
    assert strongly_connected_components(graph) == [["cytolt.a", "cytolt.b"]]


def test_framework_imports_stay_at_their_boundary() -> None:
    modules = module_names()
    wrong = []
    for module in modules:
        in_mm = module == "cytolt.mm" or module.startswith("cytolt.mm.")
        for imp in imports_of(module, modules):
            top = imp.target.split(".")[0]
            where = f"{modules[module].relative_to(ROOT)}:{imp.line} imports {imp.target}"
            if top in FRAMEWORK and not in_mm:
                wrong.append(f"{where} (only cytolt/mm may import mmdet, mmengine, mmcv)")
            if top in VIEWER:
                wrong.append(f"{where} (cytolt never imports napari or Qt; the plugin does)")
    assert not wrong, "\n".join(wrong)


# Runs in a fresh interpreter: import HEAVY (never cytolt), then fork one child per module, which imports that
# module with no cytolt module loaded before it and reports the error, if any, on its pipe.
_ISOLATION_SCRIPT = r"""
import importlib, json, os, sys, traceback
heavy, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in heavy:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # an optional package that is missing fails the module that needs it, which is reported
assert not [m for m in sys.modules if m == "cytolt" or m.startswith("cytolt.")], "a heavy import loaded cytolt"
failures = {}
running = {}
def reap():
    pid, _ = os.wait()
    name, fd = running.pop(pid)
    with os.fdopen(fd) as f:
        error = f.read()
    if error:
        failures[name] = error
for name in modules:
    if len(running) >= 2:
        reap()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        error = ""
        try:
            importlib.import_module(name)
        except BaseException:
            error = traceback.format_exc(limit=-4)
        with os.fdopen(w, "w") as f:
            f.write(error)
        os._exit(0)
    os.close(w)
    running[pid] = (name, r)
while running:
    reap()
print(json.dumps(failures))
"""


def test_every_module_imports_in_isolation() -> None:
    modules = [m for m in module_names() if m not in NOT_IMPORTED]
    done = subprocess.run(
        [sys.executable, "-c", _ISOLATION_SCRIPT, json.dumps(HEAVY), json.dumps(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    report = "\n".join(f"--- {name}\n{error}" for name, error in sorted(failures.items()))
    assert not failures, f"{len(failures)} of {len(modules)} modules fail to import on their own:\n{report}"
