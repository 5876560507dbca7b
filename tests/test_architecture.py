"""The layout is the architecture: the import graph of ``src/hios`` has no cycles, nothing below
the CLI imports the CLI, and the torch-free half (graph model, cost model, schedulers, simulator,
``hios simulate``) never imports torch."""

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


def test_nothing_below_the_cli_imports_it():
    bad = sorted((m, n) for m, deps in import_graph().items() if not m.startswith(("hios.cli", "hios.__main__"))
                 for n in deps if n.startswith("hios.cli"))
    assert not bad, f"imports of the CLI from below it: {bad}"


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
        if mod.startswith("hios.cli") or path.name in ("__main__.py", "_fastsim.py"):
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
    torch_free = ["hios", "hios.graph", "hios.formats", "hios.machine", "hios.cost.costmodel", "hios.simulator",
                  "hios.schedulers", "hios.report", "hios.options", "hios.plan", "hios.limits", "hios.outputs",
                  "hios.selection", "hios.cost.concurrency", "hios.cost.fitting", "hios.cost.feedback", "hios.program.segmenting"]
    for name in torch_free:
        mod = importlib.import_module(name)
        absent = [n for n in mod.__all__ if not hasattr(mod, n) and not (name == "hios" and n in mod._TORCH_API)]
        assert not absent, f"{name}.__all__ names what it lacks: {absent}"
