"""Hypothesis strategies that corrupt valid input files and build random command lines, for
tests/test_fuzz.py.

API::

    from fuzz_strategies import corrupt_json, corrupt_txt, argv_for, run_cli, SCALE, record

    @given(corrupt_json(valid_dict))      # -> text of a JSON file: valid_dict with 1-3 corruptions
    @given(corrupt_nested(valid_dict, [("stage_model",), ("meta", "profile")]))  # ... under those keys
    @given(corrupt_txt(valid_text))       # -> text of a HIOS .txt graph with 1-3 corruptions
    @given(argv_for("simulate", ...))     # -> list[str], a random command line

How a JSON corruption is made: the valid object is serialized after 1-3 *value* mutations at random
paths (replace a value by an extreme number, a value of the wrong type, a unicode string, a
wrong-shaped container; delete or add a key), then, with some probability, one *text* mutation
(truncate at a random offset, repeat a key inside its object, splice in a random character, turn a
number into a 400-digit integer or ``NaN``/``Infinity``).  A .txt corruption mutates lines (drop,
repeat, swap two, change a count, replace a token by an extreme or non-ASCII one) and may truncate.

:func:`run_cli` calls ``hios.cli.main`` in-process inside a fresh temporary working folder and
returns (exit code, stdout, stderr, new files); its ``special`` inputs are FIFOs, symlinks to
``/dev/zero``, folders or oversize sparse files (:func:`make_special`), run under :func:`deadline`
so that a reader that blocks fails instead of hanging.  :func:`record` counts outcomes per target, which
``conftest.py`` writes out when ``HIOS_FUZZ_REPORT`` names a file (for docs/results.md).
``SCALE`` multiplies every example count (``pytest --slow`` or ``HYPOTHESIS_PROFILE=slow``: 10).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import signal
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import strategies as st

SCALE = 1
OUTCOMES: dict[str, Counter] = {}


def examples(n: int) -> int:
    return max(1, n * SCALE)


def record(target: str, outcome: str) -> None:
    OUTCOMES.setdefault(target, Counter())[outcome] += 1


# -- values -----------------------------------------------------------------------------------------

EXTREME_NUMBERS = [0, -1, -0.0, 1, 2, 0.5, 1e-320, 1e9, 1e9 + 1, 1e12, 1e308, -1e308, 2 ** 31, 2 ** 50,
                   2 ** 50 + 1, 2 ** 63, 10 ** 30, 10 ** 400, -(10 ** 400)]
UNICODE = ["", " ", "é", "Ω", "😀", "\u202e", "\x00", "a\nb", "名前", "x" * 300, "op 1", "-1", "1e400"]
WRONG = [None, True, False, [], {}, [1, 2], {"a": 1}, "1.5", "abc", [[["x"]]]]

extreme_numbers = st.one_of(st.sampled_from(EXTREME_NUMBERS), st.floats(allow_nan=False, allow_infinity=False),
                            st.integers(-(2 ** 70), 2 ** 70))
# WRONG holds lists and dicts: copied on every draw, so that no example shares (or grows) them
weird_values = st.one_of(extreme_numbers, st.sampled_from(UNICODE), st.sampled_from(WRONG).map(copy.deepcopy),
                         st.text(max_size=8))


def _paths(obj, prefix=()):
    """Every path (tuple of keys/indices) to a value inside ``obj``, the root excluded."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


def _parent(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    return obj


def _mutate_once(draw, obj, paths) -> None:
    path = draw(st.sampled_from(paths))
    parent, key = _parent(obj, path), path[-1]
    how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap"]))
    if how == "replace":
        parent[key] = draw(weird_values)
    elif how == "delete":
        del parent[key]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "name", "cost", "gpus", "version", "😀"]))] = draw(weird_values)
    elif how == "add":
        parent.append(draw(weird_values))
    else:
        parent[key] = [parent[key]]


@st.composite
def mutated(draw, obj, prefixes=None):
    """A deep copy of the JSON value ``obj`` with 1-3 value mutations; with ``prefixes`` (tuples of
    keys/indices), only at paths under one of them (the nested fields of a plan, profile or run
    record, which random paths over a whole file seldom reach)."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if prefixes is None or any(p[:len(q)] == q for q in prefixes)]
        if not paths:
            break
        _mutate_once(draw, obj, paths)
    return obj


@st.composite
def text_mutated(draw, text: str):
    how = draw(st.sampled_from(["none", "none", "truncate", "dup_key", "splice", "big_int", "nan"]))
    if how == "truncate":
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "dup_key":
        keys = [m for m in re.finditer(r'\n(\s*)("[^"\n]+": [^\n]*?),?\n', text)]
        if keys:
            m = draw(st.sampled_from(keys))
            line = m.group(2).rstrip(",")
            return text[:m.start() + 1] + m.group(1) + line + ",\n" + text[m.start() + 1:]
        return text
    if how == "splice":
        k = draw(st.integers(0, len(text)))
        return text[:k] + draw(st.sampled_from(['"', "{", "]", ",", "\x00", "é", "\ufeff", "-", "9"])) + text[k:]
    numbers = list(re.finditer(r"(?<=[: \[])-?\d+(\.\d+)?([eE][-+]?\d+)?(?=[,\n\]])", text))
    if not numbers:
        return text
    m = draw(st.sampled_from(numbers))
    new = "1" + "0" * 400 if how == "big_int" else draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]))
    return text[:m.start()] + new + text[m.end():]


@st.composite
def corrupt_json(draw, obj) -> str:
    """Text of a JSON file: ``obj`` with value mutations and maybe one text mutation."""
    return draw(text_mutated(json.dumps(draw(mutated(obj)), indent=1)))


@st.composite
def corrupt_nested(draw, obj, prefixes) -> str:
    """Text of a JSON file: ``obj`` with 1-3 value mutations under ``prefixes`` (see :func:`mutated`)."""
    return json.dumps(draw(mutated(obj, prefixes)), indent=1)


@st.composite
def corrupt_txt(draw, text: str) -> str:
    """A HIOS .txt graph with line mutations and maybe a truncation."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        k = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "repeat", "swap", "count", "token", "token", "blank"]))
        if how == "drop":
            del lines[k]
        elif how == "repeat":
            lines.insert(k, lines[k])
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif how == "count":
            lines[k] = str(draw(st.sampled_from([0, 1, 3, 5, 99, 10 ** 9, -1])))
        elif how == "blank":
            lines.insert(k, draw(st.sampled_from(["", "   ", "\t"])))
        else:
            toks = lines[k].split() or [""]
            j = draw(st.integers(0, len(toks) - 1))
            toks[j] = str(draw(st.one_of(st.sampled_from(EXTREME_NUMBERS), st.sampled_from(
                ["nan", "inf", "-inf", "1e308", "1e400", "é", "😀", "0x10", "1_000", "", "a b"]))))
            lines[k] = " ".join(toks)
    out = "\n".join(lines) + "\n"
    if draw(st.booleans()) and out:
        out = out[:draw(st.integers(0, len(out) - 1))]
    return out


# -- command lines ----------------------------------------------------------------------------------

INT_VALUES = ["0", "1", "2", "3", "4", "-1", "16", "17", "32", "33", "256", "257", "40000", "10000000000",
              "1" + "0" * 40, "1.5", "x", "", "٣"]
FLOAT_VALUES = ["0", "0.5", "1", "-1", "nan", "inf", "-inf", "1e-300", "1e300", "1e6", "1e7", "2", "x", ""]


def _value(kind: str):
    if kind == "int":
        return st.one_of(st.sampled_from(INT_VALUES), st.integers(-5, 40).map(str))
    if kind == "float":
        return st.one_of(st.sampled_from(FLOAT_VALUES), st.floats(-1, 3).map(repr))
    if isinstance(kind, (list, tuple)):
        return st.one_of(st.sampled_from(list(kind)), st.sampled_from(UNICODE[:6]))
    raise ValueError(kind)


@st.composite
def argv_for(draw, command: str, positional: list, options: dict, flags: list = ()):
    """``[command, *positional?, --opt value | --flag ...]`` in random order, with some options
    missing, repeated or given a garbage value.  ``options`` maps an option to a value kind: "int",
    "float" or a list of choices (plus garbage)."""
    argv = [command]
    argv += [p for p in positional if draw(st.integers(0, 9)) > 0]  # mostly kept
    opts = draw(st.lists(st.sampled_from(sorted(options)), max_size=5)) if options else []
    for o in opts:
        argv += [o, draw(_value(options[o]))]
    argv += draw(st.lists(st.sampled_from(list(flags)), max_size=2)) if flags else []
    if draw(st.integers(0, 19)) == 0:
        argv.append(draw(st.sampled_from(["--bogus", "-x", "extra", "--gpus"])))
    return argv


# -- running ------------------------------------------------------------------------------------------

def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


#: Inputs that are not regular files of a sane size: no reader may block on them or read them whole.
SPECIAL_INPUTS = ("fifo", "dev-zero", "folder", "oversize")


def make_special(path: Path, kind: str) -> None:
    """A FIFO, a symlink to /dev/zero, a folder or a sparse file one byte over
    :data:`hios.limits.MAX_FILE_BYTES` at ``path``."""
    from hios.limits import MAX_FILE_BYTES
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)


@contextlib.contextmanager
def deadline(seconds: int):
    """An AssertionError instead of a hang when a command blocks (e.g. opening a FIFO)."""
    def ring(*_):
        raise AssertionError(f"still running after {seconds} s: blocked")
    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv: list[str], inputs: dict[str, str | bytes] | None = None, special: dict[str, str] | None = None):
    """Run ``hios <argv>`` in-process in a fresh temporary folder holding ``inputs`` (name -> content)
    and ``special`` inputs (name -> one of :data:`SPECIAL_INPUTS`).
    Returns (exit code, stdout, stderr, new files, folder contents reader)."""
    from hios.cli import main

    old = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for name, content in (inputs or {}).items():
            (d / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        for name, kind in (special or {}).items():
            make_special(d / name, kind)
        before = _files(d)
        out, err = io.StringIO(), io.StringIO()
        os.chdir(d)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    (deadline(60) if special else contextlib.nullcontext()):
                try:
                    code = main(argv)
                except SystemExit as e:
                    code = e.code
        finally:
            os.chdir(old)
        new = _files(d) - before
        contents = {n: (d / n).read_bytes() for n in new if (d / n).is_file()}
    return code, out.getvalue(), err.getvalue(), new, contents


def check_clean(target: str, code, err: str, new: set[str]) -> bool:
    """The property: exit 0, or exit 2 with exactly one line on stderr and no new file.  Records the
    outcome; returns True on exit 0 (the caller then checks the result)."""
    if code == 0:
        record(target, "exit 0 (valid result)")
        return True
    assert code == 2, f"exit {code!r}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line:\n{err}"
    assert not new, f"a failing command left {sorted(new)}"
    record(target, "exit 2 (one line, no file)")
    return False
