"""Running the ``hios`` CLI in-process in tests, and the folder fixture of the reliability tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hios.cli import main

#: A 4-operator graph in the HIOS text format.
GOOD_TXT = "4\n0 1.0 0.8\n1 2.0 0.7\n2 1.5 0.9\n3 0.5 1.0\n4\n0 1 1.6\n0 2 1.2\n1 3 0.4\n2 3 0.4\n"
#: The tiny model of the CLI tests (a random DAG of convolutions).
TINY = "hios.testing.dist_models:random_dag"


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A fresh current folder holding ``g.txt`` (:data:`GOOD_TXT`)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.txt").write_text(GOOD_TXT)
    return tmp_path


def files(d: Path) -> set[str]:
    """Every path under ``d``, relative to it."""
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``hios *argv`` (arguments may be paths)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
