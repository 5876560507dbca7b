"""The layout is the architecture: the import graph of ``src/hios`` has no cycles, its packages are
stages in pipeline order and none imports a later one (so nothing below the CLI imports the CLI),
and the torch-free half (graph model, cost model without the profiler, schedulers, simulator, plan →
program, ``hios simulate``) never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "hios"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".") if is_pkg else module.split(".")[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the hios modules it imports (anywhere in its body, lazily too)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(mod, path.name == "__init__.py", node)
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


#: The stages in pipeline order: module-name prefixes (longest match wins).  A module may import its
#: own stage and earlier ones; the foundation is imported by every stage.  The package root
#: (``hios``) re-exports the API and is loaded before any of its modules, so importing it from
#: below (``from .. import __version__``) adds nothing.
STAGES = [
    ("foundation", ["hios.errors", "hios.limits", "hios.optional", "hios.outputs", "hios.faults"]),
    ("graph model", ["hios.graph", "hios.fields", "hios.formats", "hios.generate", "hios.schedule", "hios.machine"]),
    ("capture", ["hios.frontend"]),
    ("cost model", ["hios.cost", "hios.bounds"]),
    ("schedulers and simulator", ["hios.simulator", "hios.schedulers", "hios.report", "hios.viz", "hios.selection",
                                  "hios.plan", "hios.stage_fit", "hios.stream_simulator"]),
    ("plan -> program", ["hios.program", "hios.options"]),
    ("runtime", ["hios.runtime"]),
    ("library front door", ["hios.pipeline"]),
    ("test models", ["hios.testing"]),
    ("CLI", ["hios.cli", "hios.__main__"]),
]

#: Modules of the torch-free stages that need torch (imported on use, never by the torch-free ones).
NEEDS_TORCH = ["hios.cost.profiler", "hios.cost.probe", "hios.cost.compile_pool", "hios.cost.costing",
               "hios.cost.timing"]


def stage_of(module: str) -> int:
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(STAGES) for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} belongs to no stage: add it to STAGES"
    return best[1]


def test_every_module_has_a_stage():
    for m in import_graph():
        if m != "hios":
            stage_of(m)


def test_no_stage_imports_a_later_one():
    bad = sorted(f"{m} ({STAGES[stage_of(m)][0]}) imports {n} ({STAGES[stage_of(n)][0]})"
                 for m, deps in import_graph().items() if m != "hios"
                 for n in deps if n != "hios" and stage_of(n) > stage_of(m))
    assert not bad, "imports of a later stage:\n" + "\n".join(bad)


def test_nothing_below_the_cli_imports_it():
    bad = sorted((m, n) for m, deps in import_graph().items() if not m.startswith(("hios.cli", "hios.__main__"))
                 for n in deps if n.startswith("hios.cli"))
    assert not bad, f"imports of the CLI from below it: {bad}"


def test_the_library_never_imports_the_test_models():
    bad = sorted((m, n) for m, deps in import_graph().items() if not m.startswith("hios.testing")
                 for n in deps if n.startswith("hios.testing"))
    assert not bad, f"library modules importing hios.testing: {bad}"


def _torch_free_modules() -> list[str]:
    last = [name for name, _ in STAGES].index("plan -> program")
    return sorted(m for m in import_graph() if m != "hios" and stage_of(m) <= last
                  and stage_of(m) != [name for name, _ in STAGES].index("capture")
                  and not any(m == t or m.startswith(t + ".") for t in NEEDS_TORCH))


def _uses_torch(path: Path) -> bool:
    """Whether a module imports torch itself, anywhere in its body (``require("torch")`` too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == "torch":
            return True
    return False


def test_torch_free_stages_never_use_torch():
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    mods = _torch_free_modules()
    assert {"hios.program.segmenting", "hios.cost.costmodel", "hios.cost.feedback", "hios.schedulers"} <= set(mods)
    bad = [m for m in mods if _uses_torch(files[m])]
    assert not bad, f"torch-free modules that import torch: {bad}"
    assert all(_uses_torch(files[m]) for m in NEEDS_TORCH), "NEEDS_TORCH names a module that does not use torch"


#: Hides torch as a machine without it would: ``find_spec`` finds no torch, ``import torch`` raises
#: ModuleNotFoundError.
NO_TORCH = ("import importlib.machinery as _m\n"
            "_find = _m.PathFinder.find_spec\n"
            "def _hide(cls, name, path=None, target=None):\n"
            "    return None if name.split('.')[0] in ('torch', 'torchvision', 'timm') else _find(name, path, target)\n"
            "_m.PathFinder.find_spec = classmethod(_hide)\n")


def test_torch_free_stages_import_without_torch():
    imports = "".join(f"import {m}\n" for m in _torch_free_modules())
    r = subprocess.run([sys.executable, "-c", imports + "import sys; assert 'torch' not in sys.modules, 'torch'"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", NO_TORCH + imports], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_hios_without_torch():
    """Without torch the torch API is there (``hasattr``, ``from hios import *``) and says, when called,
    that it needs torch."""
    code = NO_TORCH + (
        "import hios\n"
        "assert hasattr(hios, 'optimize') and hasattr(hios, 'compile') and not hasattr(hios, 'nonesuch')\n"
        "ns = {}\n"
        "exec('from hios import *', ns)\n"
        "assert callable(ns['optimize']) and 'capture' in ns\n"
        "try:\n"
        "    hios.optimize(None, None)\n"
        "except hios.HiosError as e:\n"
        "    assert 'needs torch' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('hios.optimize ran without torch')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("code", [
    "import hios, hios.graph, hios.formats, hios.machine, hios.cost.costmodel, hios.simulator, hios.schedulers, "
    "hios.report, hios.options, hios.plan, hios.program.segmenting",
    "from hios.cli import main; import sys, os, tempfile; d = tempfile.mkdtemp(); p = os.path.join(d, 'g.txt');"
    " main(['generate', '--nodes', '20', '--edges', '30', '--layers', '3', '-o', p]);"
    " main(['simulate', p, '--gpus', '2', '--algo', 'all'])",
])
def test_torch_free_half_never_imports_torch(code):
    check = code + "; import sys; assert 'torch' not in sys.modules, 'torch was imported'"
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_library_module_declares_its_public_names():
    """``__all__`` in every module below the CLI (torch-free ones are imported to check the names)."""
    missing = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        if mod.startswith("hios.cli") or path.name in ("__main__.py",):
            continue
        tree = ast.parse(path.read_text())
        names = [n for n in tree.body if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
        public = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
        if public and not names:
            missing.append(mod)
    assert not missing, f"modules without __all__: {missing}"


def test_declared_names_exist():
    import importlib
    for name in ["hios"] + _torch_free_modules():
        mod = importlib.import_module(name)
        absent = [n for n in getattr(mod, "__all__", []) if not hasattr(mod, n)
                  and not (name == "hios" and n in mod._TORCH_API)]
        assert not absent, f"{name}.__all__ names what it lacks: {absent}"
