"""The call path of a ``hios`` command, from argv to the report: which stages it enters, in what order,
and whether it visits one twice.

    PYTHONPATH=src python benchmarks/call_path.py [--out DIR] -- run --model googlenet --image-size 224

Runs ``hios.cli.main(argv)`` in this process under :func:`sys.setprofile` (every thread, through
:func:`threading.setprofile`) and prints the path, a verdict and, under ``--out`` (default
``benchmarks/results/``), ``call_path.txt`` with the same text.  Exit status 0 when the path is a
straight line, 1 when it is not (2 on bad arguments).

What is recorded
----------------
Only frames of the package (``hios``) count; frames of anything else (torch, the standard library)
are transparent, so a ``hios`` function called by torch is a call of the nearest ``hios`` frame
below it.  Module bodies run by an import during the command (``<module>`` frames, and all they
call) are imports, counted, not calls of the flow.  Each module belongs to a *unit*, its stage
package: ``hios.X`` for ``hios.X`` and everything under it, except
``hios.runtime.{local,distributed,measure}``, three units.  The units of the stages *foundation*
and *graph model* (``errors``, ``limits``, ``optional``, ``outputs``, ``faults``, ``graph``,
``fields``, ``formats``, ``generate``, ``schedule``, ``machine``), the typed options
(:data:`OPTION_MODULES`: ``hios.options`` and the option records it re-exports) and the package
root are **utilities**: every stage uses them, so a call into one is counted (per utility module,
and by which unit called it) and reported in a table of its own, not part of the path.  What a
utility calls is not a visit either (an options record validating its devices with
``hios.program.devices``: listed under the utilities), except a function of the unit that called
the utility (a ``lambda`` handed to :class:`hios.outputs.OutputSet`), which continues that unit's
visit.

Visits
------
A *visit* of a unit is a frame of it whose nearest non-utility ``hios`` caller frame is of another
unit: the outermost frame of that unit on that stretch of the stack.  Frames below it of the same
unit (its helpers, its own modules) are part of the same visit; the modules they enter are listed
with the visit.  Visits nest: a visit's *children* are the visits made while it is on the stack, in
call order.  Two kinds of visits are set apart:

* a *callback* is a visit of a unit of a later stage than its caller's (``tests/test_architecture.py``,
  ``STAGES``), which can only happen through a function passed down (a progress ``log``, a
  ``lambda``): the earlier stage cannot import the later one.  Callbacks are listed, not counted
  as visits of the flow;
* a *resume* is a generator frame resumed (``next``, a context manager's ``__exit__``) after its
  first start: the same visit continued, not a new one.  Resumes are counted, not listed.

**Visited twice**, the property checked: among the children of one visit (callbacks and resumes
left out), consecutive visits of the same unit are merged into one entry with a call count (a loop
calling the same stage is one step); a unit that appears in two entries of that compressed sequence
was entered, left for another unit and entered again *at the same depth*: a second visit.  A call
from unit A down to B that returns to A is not a second visit of A (B is A's child).  So
``cli -> pipeline, runtime, pipeline`` (the CLI calls the pipeline, then the runtime, then the
pipeline again) is a second visit of ``pipeline``, as is a pipeline that calls ``cost``, then
``schedulers``, then ``cost`` again.

The verdict covers the *top-level flow*: the steps of the root visit (the CLI) and of every visit
down to ``--depth`` levels below it (default 1: the CLI's steps and the steps of each of those,
such as the pipeline's).  Deeper levels are the inside of one stage (the runtime building one
segment after another, a scheduler's loop over the cost model and the simulator): their second
visits are counted and listed as information, not judged.  A second visit that the code needs is
declared in :data:`INHERENT` with its reason; it is listed as inherent, not counted against the
verdict.  Work in other threads (the runtime's stream threads on CPU) is recorded as separate
trees, listed, not judged.  Python 3.11: ``sys.monitoring`` (3.12) would be cheaper; under the
profile function the command runs about 2x slower (``hios run --model googlenet --image-size
224`` on the 2-core build machine, 2026-12-03, one run each: 21.9 s against 11.6 s).
"""

from __future__ import annotations

import argparse
import dis
import importlib.util
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
#: The typed options: records every stage reads, validated when made (utilities, like the foundation).
OPTION_MODULES = ["hios.options", "hios.cost.options", "hios.program.levers"]
#: Second visits the flow needs: (visit's unit, its entry function, the unit visited twice) -> why.
INHERENT = {
    ("hios.pipeline", "plan_model", "hios.frontend"):
        "the front door checks the model and its inputs first (frontend.model_checks), then the cost "
        "option is resolved, then the model captured (frontend.capture)",
    ("hios.pipeline", "plan_model", "hios.cost"):
        "the cost option is resolved before the capture, so that a bad one fails fast (the capture is "
        "slow), and the captured graph is costed after it",
}
GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR


def _architecture():
    """tests/test_architecture.py, where the stages in pipeline order are defined (one list)."""
    spec = importlib.util.spec_from_file_location("_hios_architecture", ROOT / "tests" / "test_architecture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass(frozen=True)
class Layout:
    """How module names map to units, which units are utilities, and the stage index of a unit."""

    package: str
    unit_of: Callable[[str], str]
    is_utility: Callable[[str], bool]
    stage_of: Callable[[str], int]


def hios_layout() -> Layout:
    arch = _architecture()
    utility_stages = {"foundation", "graph model"}
    utility_prefixes = [p for name, prefixes in arch.STAGES if name in utility_stages for p in prefixes]
    utility_prefixes += OPTION_MODULES

    def unit_of(module: str) -> str:
        parts = module.split(".")
        if any(module == m or module.startswith(m + ".") for m in OPTION_MODULES):
            return module
        n = 3 if len(parts) > 2 and parts[1] == "runtime" else 2
        return ".".join(parts[:n])

    def is_utility(unit: str) -> bool:
        return unit == "hios" or any(unit == p or unit.startswith(p + ".") for p in utility_prefixes)

    def stage_of(unit: str) -> int:
        return -1 if unit == "hios" else arch.stage_of(unit)

    return Layout("hios", unit_of, is_utility, stage_of)


@dataclass
class Visit:
    """One visit of a unit: where it was entered (``function`` of ``module``), the modules entered
    while it was the innermost visit (with counts), its children in call order."""

    unit: str
    module: str
    function: str
    callback: bool = False
    resumed: bool = False
    modules: Counter = field(default_factory=Counter)
    children: list["Visit"] = field(default_factory=list)


@dataclass
class Recording:
    roots: dict[str, list[Visit]]  # thread name -> its top visits (the main thread's first is the CLI)
    utilities: Counter  # (utility module, calling unit) -> calls
    below_utilities: Counter  # (utility module, module it called) -> calls, not visits
    imports: Counter  # module -> bodies run (imports during the command)
    resumes: int


class _Recorder:
    """The profile function: a stack per thread of (frame, visit or None) for the package's frames."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.prefix = layout.package + "."
        self.local = threading.local()
        self.roots: dict[str, list[Visit]] = {}
        self.utilities: Counter = Counter()
        self.below_utilities: Counter = Counter()
        self.imports: Counter = Counter()
        self.resumes = 0
        self._starts: dict = {}  # code -> offset of its first RESUME (a generator's first start)
        self._lock = threading.Lock()

    def _stack(self) -> list:
        st = getattr(self.local, "stack", None)
        if st is None:
            st = self.local.stack = []
            with self._lock:
                self.roots.setdefault(threading.current_thread().name, [])
        return st

    def _resumed(self, frame) -> bool:
        code = frame.f_code
        if not code.co_flags & GENERATOR_FLAGS:
            return False
        start = self._starts.get(code)
        if start is None:
            start = self._starts[code] = min((i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"),
                                             default=0)
        return frame.f_lasti != start

    def __call__(self, frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module != self.layout.package and not module.startswith(self.prefix):
                return
            self._enter(frame, module)
        elif event == "return":
            st = getattr(self.local, "stack", None)
            if st and st[-1][0] is frame:
                st.pop()

    def _enter(self, frame, module: str) -> None:
        lay = self.layout
        st = self._stack()
        unit = lay.unit_of(module)
        current = next((e[1] for e in reversed(st) if e[1] is not None), None)  # the innermost visit
        hidden = st[-1][2] if st else None  # below an import ("") or a utility (its module)
        if frame.f_code.co_name == "<module>" or hidden == "":  # an import: not a call of the flow
            self.imports[module] += frame.f_code.co_name == "<module>"
            st.append((frame, None, ""))
            return
        if lay.is_utility(unit):
            self.utilities[(module, current.unit if current else "-")] += 1
            st.append((frame, None, hidden or module))
            return
        if current is not None and current.unit == unit:  # the same visit (also called back through a utility)
            current.modules[module] += 1
            st.append((frame, None, None))
            return
        if hidden:  # what a utility uses (an options record validating with its stage's helpers)
            self.below_utilities[(hidden, module)] += 1
            st.append((frame, None, hidden))
            return
        resumed = self._resumed(frame)
        self.resumes += resumed
        callback = current is not None and lay.stage_of(unit) > lay.stage_of(current.unit)
        visit = Visit(unit, module, frame.f_code.co_qualname, callback, resumed)
        visit.modules[module] += 1
        if current is None:
            with self._lock:
                self.roots[threading.current_thread().name].append(visit)
        else:
            current.children.append(visit)
        st.append((frame, visit, None))


def record(fn: Callable[[], object], layout: Layout) -> tuple[object, Recording]:
    """Run ``fn()`` under the recorder; ``(its result, the recording)``.  The profile functions
    that were set before are restored afterwards."""
    rec = _Recorder(layout)
    old, old_threads = sys.getprofile(), threading.getprofile()
    threading.setprofile(rec)
    sys.setprofile(rec)
    try:
        result = fn()
    finally:
        sys.setprofile(old)
        threading.setprofile(old_threads)
    return result, Recording(rec.roots, rec.utilities, rec.below_utilities, rec.imports, rec.resumes)


def steps(visit: Visit) -> list[tuple[str, int]]:
    """The compressed sequence of a visit's children: ``(unit, visits)``, consecutive visits of one
    unit merged, callbacks and resumes left out."""
    out: list[tuple[str, int]] = []
    for c in visit.children:
        if c.callback or c.resumed:
            continue
        if out and out[-1][0] == c.unit:
            out[-1] = (c.unit, out[-1][1] + 1)
        else:
            out.append((c.unit, 1))
    return out


def second_visits(visit: Visit) -> list[str]:
    """The units that appear twice in :func:`steps` of ``visit``: entered, left for another unit at
    the same depth, entered again."""
    seen = Counter(u for u, _ in steps(visit))
    return sorted(u for u, n in seen.items() if n > 1)


@dataclass
class Finding:
    path: str  # the visits from the root down to the one whose steps revisit, e.g. "hios.cli > hios.pipeline"
    units: list[str]  # visited twice, not declared inherent
    inherent: list[tuple[str, str]]  # (unit, why): visited twice, declared in INHERENT
    steps: list[tuple[str, int]]
    judged: bool  # within ``depth`` of the root (the top-level flow)


def findings(root: Visit, depth: int, inherent: dict = INHERENT) -> list[Finding]:
    """Every visit whose steps visit a unit twice; ``judged`` for those at most ``depth`` levels
    below ``root`` (``depth=0``: the root's own steps only)."""
    out: list[Finding] = []

    def walk(v: Visit, path: str, level: int) -> None:
        units = second_visits(v)
        if units:
            known = [(u, inherent[(v.unit, v.function, u)]) for u in units if (v.unit, v.function, u) in inherent]
            out.append(Finding(path, [u for u in units if u not in dict(known)], known, steps(v), level <= depth))
        for c in v.children:
            walk(c, f"{path} > {c.unit}.{c.function}" + (" (callback)" if c.callback else ""), level + 1)

    walk(root, f"{root.unit}.{root.function}", 0)
    return out


def straight(root: Visit, depth: int = 1, inherent: dict = INHERENT) -> bool:
    """Whether the top-level flow below ``root`` visits no unit twice (beyond ``inherent``)."""
    return not any(f.units for f in findings(root, depth, inherent) if f.judged)


def _fmt_steps(st: list[tuple[str, int]]) -> str:
    return " -> ".join(u + (f" x{n}" if n > 1 else "") for u, n in st) or "(none)"


def format_tree(v: Visit, depth: int, indent: str = "") -> list[str]:
    """The visits down to ``depth`` levels below ``v``: one line each, consecutive visits of one
    unit with the same entry merged (``xN``)."""
    mods = ", ".join(f"{m}" + (f" x{n}" if n > 1 else "") for m, n in sorted(v.modules.items()))
    tag = " [callback]" if v.callback else " [resumed]" if v.resumed else ""
    lines = [f"{indent}{v.unit}{tag}  <- {v.function}()  modules: {mods}"]
    if depth <= 0:
        if v.children:
            lines.append(f"{indent}  ... {sum(1 for _ in _descendants(v))} visits below")
        return lines
    for _, group in groupby(v.children, key=lambda c: (c.unit, c.function, c.callback, c.resumed)):
        group = list(group)
        sub = format_tree(group[0], depth - 1, indent + "  ")
        if len(group) > 1:
            sub[0] += f"  (x{len(group)}, the first shown)"
        lines += sub
    return lines


def _descendants(v: Visit):
    for c in v.children:
        yield c
        yield from _descendants(c)


def report(rec: Recording, depth: int, show: int) -> tuple[str, bool]:
    """(the text, whether the top-level flow is a straight line)."""
    main_name = threading.main_thread().name
    roots = rec.roots.get(main_name, [])
    lines: list[str] = []
    if not roots:
        return "no hios frame was entered", False
    root = roots[0]
    lines.append(f"top-level flow (steps of {root.unit}): {_fmt_steps(steps(root))}")
    for c in root.children:
        if not (c.callback or c.resumed) and c.children:
            lines.append(f"  steps of {c.unit} ({c.function}): {_fmt_steps(steps(c))}")
    lines.append("")
    lines.append(f"visits (to {show} levels; resumed generators: {rec.resumes}):")
    for r in roots:
        lines += format_tree(r, show, "  ")
    others = {t: rs for t, rs in rec.roots.items() if t != main_name and rs}
    if others:
        lines.append("")
        lines.append("other threads (not judged): " + "; ".join(
            f"{t}: " + ", ".join(f"{u} x{n}" for u, n in Counter(r.unit for r in rs).items())
            for t, rs in sorted(others.items())))
    callbacks = Counter((c.unit, c.function, p.unit) for p in [root, *_descendants(root)]
                        for c in p.children if c.callback)
    lines.append("")
    lines.append("callbacks (a later stage's function called by an earlier stage):")
    lines += [f"  {caller} -> {unit}.{fn}() x{n}" for (unit, fn, caller), n in sorted(callbacks.items())] or ["  none"]
    util = Counter()
    for (module, caller), n in rec.utilities.items():
        util[module] += n
    lines.append("")
    lines.append("imports during the command (module bodies run; not part of the path): "
                 f"{len(rec.imports)} modules")
    lines.append("")
    lines.append("utilities (calls; not part of the path):")
    for module, n in sorted(util.items(), key=lambda kv: -kv[1]):
        callers = sorted({c for (m, c) in rec.utilities if m == module})
        lines.append(f"  {module:28s} {n:8d}  from {', '.join(callers)}")
    if rec.below_utilities:
        lines.append("  what the utilities called in the stages (not visits):")
        lines += [f"    {u} -> {m} x{n}" for (u, m), n in sorted(rec.below_utilities.items())]
    found = [f for r in roots[:1] for f in findings(r, depth)]
    judged = [f for f in found if f.judged and f.units]
    lines.append("")
    lines.append(f"second visits in the top-level flow (depth <= {depth}):")
    lines += [f"  {f.path}: {', '.join(f.units)} (steps: {_fmt_steps(f.steps)})" for f in judged] or ["  none"]
    known = [(f, u) for f in found if f.judged for u in f.inherent]
    lines.append("inherent second visits (declared in INHERENT):")
    lines += [f"  {f.path}: {u}: {why}" for f, (u, why) in known] or ["  none"]
    deeper = [f for f in found if not f.judged]
    lines.append(f"second visits deeper inside a stage (information, not judged): {len(deeper)}")
    lines += [f"  {f.path}: {', '.join(f.units + [u for u, _ in f.inherent])}" for f in deeper[:20]]
    if len(roots) > 1:
        lines.append(f"note: {len(roots) - 1} more top visits on the main thread after the CLI returned")
    ok = not judged and len(roots) == 1
    lines.append("")
    lines.append("verdict: " + ("straight line: no unit visited twice in the top-level flow" if ok else
                                "NOT a straight line"))
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for call_path.txt")
    p.add_argument("--depth", type=int, default=1, help="levels below the CLI judged (default 1)")
    p.add_argument("--show", type=int, default=3, help="levels of visits printed (default 3)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the hios command line (after --)")
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        p.error("give the hios command after --, e.g. -- run --model googlenet --image-size 224")
    from hios.cli import main as hios_main
    code, rec = record(lambda: hios_main(cmd), hios_layout())
    text, ok = report(rec, a.depth, a.show)
    head = f"hios {' '.join(cmd)}  (exit status {code})"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "call_path.txt").write_text(head + "\n" + text + "\n")
    print(head)
    print(text)
    print(f"-> {out / 'call_path.txt'}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
