"""The documentation runs: every Examples section of the public API and the README's Python
example are doctests (CPU only, logical devices)."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE = ["hios.errors", "hios.options", "hios.fields", "hios.graph", "hios.machine", "hios.schedule", "hios.simulator",
              "hios.schedulers"]
WITH_TORCH = ["hios.frontend.capture", "hios.pipeline", "hios.runtime.local.executor"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(test: doctest.DocTest) -> doctest.TestResults:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", TORCH_FREE + WITH_TORCH)
def test_module_examples(name):
    if name in WITH_TORCH:
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} has no examples"
    for t in tests:
        res = _run(t)
        assert res.failed == 0, f"{t.name}: {res.failed} example(s) failed (run python -m doctest -v)"


def test_readme_python_example():
    pytest.importorskip("torch")
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", text, re.S)
    assert blocks, "README has no ```pycon example"
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "README.md", "README.md", 0)
    res = _run(test)
    assert res.failed == 0, f"README example: {res.failed} failed"
