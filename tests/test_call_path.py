"""The call path of ``hios run`` is a straight line (``benchmarks/call_path.py``): from argv to the
report, no stage is entered, left for another one and entered again at the same depth of the
top-level flow; and the tool that says so fails on a flow that does revisit."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from cli_helpers import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("call_path", ROOT / "benchmarks" / "call_path.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["call_path"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_hios_run_is_a_straight_line(cp, tmp_path, capsys):
    pytest.importorskip("torch")
    argv = ["run", "--model", TINY, "--image-size", "16", "--devices", "cpu", "--no-baselines", "--warmup", "0",
            "--repeats", "2"]
    code = cp.main(["--out", str(tmp_path), "--", *argv])
    text = (tmp_path / "call_path.txt").read_text()
    assert code == 0, text
    assert "verdict: straight line" in text
    # and the path is the one of the pipeline: the CLI hands the work to the pipeline, which
    # captures, costs, schedules and builds; the runtime measures and reports
    from hios.cli import main
    code, rec = cp.record(lambda: main(argv), cp.hios_layout())
    capsys.readouterr()
    assert code == 0
    root = rec.roots["MainThread"][0]
    assert (root.unit, root.function) == ("hios.cli", "main")
    units = [u for u, _ in cp.steps(root)]
    assert units.index("hios.pipeline") < units.index("hios.runtime.measure")
    plan_model = next(c for c in root.children if c.function == "plan_model")
    assert [u for u, _ in cp.steps(plan_model)][-3:] == ["hios.report", "hios.bounds", "hios.plan"]
    assert cp.straight(root)
    assert not cp.straight(root, inherent={}), "the declared inherent revisits no longer happen: drop them"


@pytest.mark.parametrize("variant", ["plan file", "choose"])
def test_other_paths_of_hios_run_are_straight_lines(cp, tmp_path, capsys, variant):
    pytest.importorskip("torch")
    from hios.cli import main
    fast = ["--devices", "cpu", "--no-baselines", "--warmup", "0", "--repeats", "2"]
    if variant == "plan file":
        plan = tmp_path / "plan.json"
        assert main(["optimize", "--model", TINY, "--image-size", "16", "-o", str(plan)]) == 0
        argv = ["run", str(plan), "--model", TINY, *fast]
    else:
        argv = ["run", "--model", TINY, "--image-size", "16", "--choose", "2", *fast]
    code, rec = cp.record(lambda: main(argv), cp.hios_layout())
    capsys.readouterr()
    assert code == 0
    root = rec.roots["MainThread"][0]
    text, ok = cp.report(rec, 1, 2)
    assert ok and cp.straight(root), text


TOY = {
    "__init__.py": "",
    "util.py": "def helper(f=None):\n    return f() if f else 1\n",
    "a.py": """
        import contextlib
        from . import util
        def step():
            return util.helper()
        @contextlib.contextmanager
        def block():
            yield
        def run(callback):
            return callback()
        """,
    "b.py": """
        from . import a
        def step():
            return 2
        def down_and_back():
            return a.step() + a.step()
        """,
    "top.py": """
        from . import a, b, util
        def revisits():
            a.step(); b.step(); a.step()
        def straight():
            a.step(); a.step(); b.down_and_back(); b.step()
        def in_a_block():
            with a.block():
                b.step()
        def with_callbacks():
            a.step(); a.run(say); b.step(); util.helper(say)
        def say():
            return 0
        from . import mid
        def nested_revisit():
            b.step(); mid.inner()
        """,
    "mid.py": """
        from . import a, b
        def inner():
            a.step(); b.step(); a.step()
        """,
}


@pytest.fixture
def toy(tmp_path, monkeypatch, cp):
    """A package ``toyflow`` of four stages (a < b < mid < top) and a utility, and its layout."""
    pkg = tmp_path / "toyflow"
    pkg.mkdir()
    for name, text in TOY.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m.startswith("toyflow")]:
        monkeypatch.delitem(sys.modules, m)
    import toyflow.top as top
    order = ["toyflow.a", "toyflow.b", "toyflow.mid", "toyflow.top"]
    layout = cp.Layout("toyflow", lambda m: m, lambda u: u == "toyflow.util", order.index)

    def root_of(fn):
        _, rec = cp.record(fn, layout)
        roots = rec.roots["MainThread"]
        assert len(roots) == 1
        return roots[0], rec

    return top, root_of


def test_a_revisiting_flow_fails(cp, toy):
    top, root_of = toy
    root, _ = root_of(top.revisits)
    assert cp.steps(root) == [("toyflow.a", 1), ("toyflow.b", 1), ("toyflow.a", 1)]
    assert cp.second_visits(root) == ["toyflow.a"]
    assert not cp.straight(root, 0)
    text, ok = cp.report(cp.Recording({"MainThread": [root]}, {}, {}, {}, 0), 1, 2)
    assert not ok and "verdict: NOT a straight line" in text and "toyflow.top.revisits: toyflow.a" in text


def test_a_straight_flow_passes(cp, toy):
    top, root_of = toy
    root, _ = root_of(top.straight)
    # a.step twice in a row is one step; b calling a and returning is a call, not a second visit
    assert cp.steps(root) == [("toyflow.a", 2), ("toyflow.b", 2)]
    assert [u for u, _ in cp.steps(root.children[2])] == ["toyflow.a"]
    assert cp.straight(root, 1)


def test_resumes_callbacks_and_utilities_are_not_visits(cp, toy):
    top, root_of = toy
    root, _ = root_of(top.in_a_block)  # the block's exit resumes a's generator: not a second visit of a
    assert [(c.unit, c.resumed) for c in root.children] == [("toyflow.a", False), ("toyflow.b", False),
                                                            ("toyflow.a", True)]
    assert cp.straight(root, 0)
    root, rec = root_of(top.with_callbacks)
    assert [(c.unit, c.callback) for c in root.children[1].children] == [("toyflow.top", True)]
    assert cp.steps(root) == [("toyflow.a", 2), ("toyflow.b", 1)]
    assert rec.utilities[("toyflow.util", "toyflow.a")] == 1 and rec.utilities[("toyflow.util", "toyflow.top")] == 1
    assert cp.straight(root, 0)


def test_depth_and_inherent(cp, toy):
    top, root_of = toy
    root, _ = root_of(top.nested_revisit)  # the revisit is one level down, inside mid.inner
    assert cp.straight(root, 0)
    assert not cp.straight(root, 1)
    why = {("toyflow.mid", "inner", "toyflow.a"): "a toy reason"}
    assert cp.straight(root, 1, inherent=why)
    [f] = cp.findings(root, 1, why)
    assert f.units == [] and f.inherent == [("toyflow.a", "a toy reason")]
