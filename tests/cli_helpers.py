"""Running the ``hios`` CLI in-process in tests."""

from __future__ import annotations

from hios.cli import main


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``hios *argv`` (arguments may be paths)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
