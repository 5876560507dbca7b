"""Graph file formats, chosen by extension.

* ``.json`` — the project's own format, versioned; round-trips exactly::

    {"format": "hios-graph", "version": 1, "name": ..., "meta": {...},
     "operators": [{"name", "cost", "kind", "output_bytes", "utilization", "meta"}...],
     "edges": [{"src", "dst", "bytes", "time"}...]}

* ``.txt`` — the text format of the HIOS reference simulation: the operator count, then one
  ``id weight utilization`` line per operator, the edge count, then one ``u v weight`` line
  per edge (weights in ms; the edge weight is its transfer time).

Every error names the file and, for text, the line.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from .graph import Edge, Graph, GraphError, Operator
from .limits import MAX_COST_MS, number_problem
from .outputs import atomic_write_text

__all__ = ["GRAPH_FORMAT", "GRAPH_VERSION", "check_profile_file", "check_profile_input", "graph_from_dict",
           "graph_to_dict", "load_graph", "parse_json", "read_json", "read_text", "read_txt", "save_graph",
           "write_txt"]

GRAPH_FORMAT = "hios-graph"
GRAPH_VERSION = 1


def _plain(x):
    """JSON-ready number: ints and floats as they are, other reals (numpy scalars) converted."""
    if x is None or type(x) in (int, float):
        return x
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def graph_to_dict(graph: Graph) -> dict:
    return {
        "format": GRAPH_FORMAT, "version": GRAPH_VERSION, "name": graph.name, "meta": graph.meta,
        "operators": [{"name": op.name, "cost": _plain(op.cost), "kind": op.kind,
                       "output_bytes": _plain(op.output_bytes), "utilization": _plain(op.utilization),
                       "meta": op.meta} for op in graph.ops],
        "edges": [{"src": e.src, "dst": e.dst, "bytes": _plain(e.bytes), "time": _plain(e.time)}
                  for e in graph.edges],
    }


def graph_from_dict(d: dict, where: str = "graph") -> Graph:
    if not isinstance(d, dict) or d.get("format") != GRAPH_FORMAT:
        raise GraphError(f"{where}: not a hios graph (expected \"format\": \"{GRAPH_FORMAT}\")")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= GRAPH_VERSION:
        raise GraphError(f"{where}: unsupported graph version {version!r} (this hios reads version "
                         f"{GRAPH_VERSION})")
    for key in ("operators", "edges"):
        if not isinstance(d.get(key, []), list):
            raise GraphError(f"{where}: {key!r} must be a list")
    for key in ("meta",):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise GraphError(f"{where}: {key!r} must be an object")
    ops = []
    for k, o in enumerate(d.get("operators", [])):
        try:
            meta = o.get("meta") or {}
            if not isinstance(meta, dict):
                raise TypeError
            ops.append(Operator(o["name"], o.get("cost", 0.0), o.get("kind", "generic"),
                                o.get("output_bytes", 0), o.get("utilization", 1.0), dict(meta)))
        except (KeyError, TypeError, AttributeError):
            raise GraphError(f"{where}: operator #{k} is malformed (an object with at least a name, "
                             "meta an object)") from None
    edges = []
    for k, e in enumerate(d.get("edges", [])):
        try:
            edges.append(Edge(e["src"], e["dst"], e.get("bytes", 0), e.get("time")))
        except (KeyError, TypeError, AttributeError):
            raise GraphError(f"{where}: edge #{k} is malformed (an object with src and dst)") from None
    try:
        return Graph(ops, edges, str(d.get("name", "graph")), d.get("meta"))
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None


def _num(tok: str, what: str, where: str, line: int) -> float:
    try:
        return float(tok)
    except ValueError:
        raise GraphError(f"{where}:{line}: {what} {tok!r} is not a number") from None


def _count(toks: list[str], what: str, where: str, line: int, hint: str = "") -> int:
    if len(toks) == 1 and toks[0].isascii() and toks[0].isdigit():
        return int(toks[0])
    raise GraphError(f"{where}:{line}: expected {what} (one integer >= 0), got {' '.join(toks)!r}{hint}")


def read_txt(text: str, where: str = "graph.txt", name: str | None = None) -> Graph:
    """Parse the HIOS reference text format.  Every problem that belongs to one line (a bad
    count, a non-number, a missing or extra line, a duplicate operator, an edge naming an unknown
    operator) is reported as ``FILE:LINE: ...``; a cycle names its operators."""
    lines = [(k, t) for k, t in enumerate((ln.split() for ln in text.splitlines()), 1) if t]  # skip blanks
    nlines = len(lines)

    def missing(what: str) -> GraphError:
        last = lines[-1][0] if lines else 0
        return GraphError(f"{where}:{last + 1}: missing line: expected {what}")

    if not lines:
        raise missing("the operator count")
    ln, toks = lines[0]
    n = _count(toks, "the operator count", where, ln)
    pos = 1
    ops = []
    op_line: dict[str, int] = {}
    for k in range(n):
        if pos >= nlines:
            raise missing(f"operator {k + 1} of {n}: 'id weight utilization'")
        ln, toks = lines[pos]
        pos += 1
        nt = len(toks)
        if nt != 3 and nt != 2:
            hint = " (is the operator count wrong?)" if nt == 1 else ""
            raise GraphError(f"{where}:{ln}: expected 'id weight utilization' for operator {k + 1} of {n}, "
                             f"got {' '.join(toks)!r}{hint}")
        try:
            w = float(toks[1])
            u = float(toks[2]) if nt == 3 else 1.0
        except ValueError:
            _num(toks[1], "weight", where, ln)
            _num(toks[2], "utilization", where, ln)
            raise AssertionError("unreachable") from None
        if not (0 <= w <= MAX_COST_MS):
            raise GraphError(f"{where}:{ln}: operator {toks[0]!r} has invalid weight {toks[1]!r}: "
                             f"{number_problem(w, MAX_COST_MS, ' ms')}")
        if not 0 < u <= 1:
            raise GraphError(f"{where}:{ln}: operator {toks[0]!r} has utilization {toks[2]!r} outside (0, 1]")
        oid = toks[0]
        if oid in op_line:
            raise GraphError(f"{where}:{ln}: duplicate operator id {oid!r} (first on line {op_line[oid]})")
        op_line[oid] = ln
        ops.append(Operator(oid, w, "generic", 0, u))
    if pos >= nlines:
        raise missing("the edge count")
    ln, toks = lines[pos]
    pos += 1
    m = _count(toks, "the edge count", where, ln, " (is the operator count wrong?)" if len(toks) > 1 else "")
    edges = []
    edge_line: dict[tuple[str, str], int] = {}
    for k in range(m):
        if pos >= nlines:
            raise missing(f"edge {k + 1} of {m}: 'u v weight'")
        ln, toks = lines[pos]
        pos += 1
        if len(toks) != 3:
            raise GraphError(f"{where}:{ln}: expected 'u v weight' for edge {k + 1} of {m}, got {' '.join(toks)!r}")
        src, dst, wt = toks
        try:
            w = float(wt)
        except ValueError:
            _num(wt, "edge weight", where, ln)
            raise AssertionError("unreachable") from None
        if not (0 <= w <= MAX_COST_MS):
            raise GraphError(f"{where}:{ln}: edge {src} -> {dst} has invalid weight {wt!r}: "
                             f"{number_problem(w, MAX_COST_MS, ' ms')}")
        key = (src, dst)
        if key in edge_line or src not in op_line or dst not in op_line or src == dst:
            for end in key:
                if end not in op_line:
                    raise GraphError(f"{where}:{ln}: edge {src} -> {dst} names unknown operator {end!r}")
            if src == dst:
                raise GraphError(f"{where}:{ln}: edge {src} -> {dst} is a self-loop")
            raise GraphError(f"{where}:{ln}: duplicate edge {src} -> {dst} (first on line {edge_line[key]})")
        edge_line[key] = ln
        edges.append(Edge(src, dst, 0, w))
    if pos < nlines:
        raise GraphError(f"{where}:{lines[pos][0]}: unexpected extra line after the {m} declared edges "
                         "(is the edge count wrong?)")
    try:
        return Graph(ops, edges, name or Path(where).stem)
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None


def _fmt(x: float) -> str:
    return repr(float(x))


def write_txt(graph: Graph) -> str:
    """The HIOS text form of ``graph``: names, costs, utilizations and edge times only (kinds,
    bytes and meta are dropped); every edge needs an explicit time and no name may hold a space."""
    for op in graph.ops:
        if any(c.isspace() for c in op.name):
            raise GraphError(f"operator {op.name!r} has white space in its name; the .txt format cannot hold it "
                             "(save as .json instead)")
    out = [str(len(graph.ops))]
    out += [f"{op.name} {_fmt(op.cost)} {_fmt(op.utilization)}" for op in graph.ops]
    out.append(str(len(graph.edges)))
    for e in graph.edges:
        if e.time is None:
            raise GraphError(f"edge {e.src!r} -> {e.dst!r} has no explicit time; the .txt format needs one "
                             "(save as .json instead)")
        out.append(f"{e.src} {e.dst} {_fmt(e.time)}")
    return "\n".join(out) + "\n"


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path``; a one-line GraphError naming the file when it cannot be read."""
    p = Path(path)
    try:
        return p.read_text()
    except OSError as e:
        raise GraphError(f"{p}: cannot read{'' if what == 'file' else ' ' + what}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise GraphError(f"{p}: not a text file") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return d


def parse_json(text: str, where: str):
    """``json.loads`` with a one-line GraphError naming ``where`` and the line.  A key given twice in
    one object is refused (``json`` would silently keep the last one)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise GraphError(f"{where}:{e.lineno}: invalid JSON: {e.msg}") from None
    except _DuplicateKey as e:
        raise GraphError(f"{where}: invalid JSON: key {e.args[0][:60]!r} appears twice in one object") from None
    except RecursionError:
        raise GraphError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise GraphError(f"{where}: invalid JSON: {str(e).splitlines()[0][:120]}") from None


def read_json(path: str | Path, what: str = "file"):
    """Read and parse a JSON file; every failure is a one-line GraphError naming the file."""
    return parse_json(read_text(path, what), str(path))


def load_graph(path: str | Path) -> Graph:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".txt"):
        raise GraphError(f"{p}: unknown graph format {p.suffix!r} (use .json or .txt)")
    text = read_text(p)
    if suffix == ".json":
        return graph_from_dict(parse_json(text, str(p)), str(p))
    return read_txt(text, str(p))


def save_graph(graph: Graph, path: str | Path) -> None:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(graph_to_dict(graph), indent=1) + "\n"
    elif suffix == ".txt":
        text = write_txt(graph)
    else:
        raise GraphError(f"{p}: unknown graph format {p.suffix!r} (use .json or .txt)")
    atomic_write_text(p, text, "graph", GraphError)


def check_profile_input(profile: Graph, model: str, image_size: int, batch: int = 1, where: str = "profile") -> None:
    """Refuse, before any capture, a measured profile graph (``hios profile -o``) taken with another
    input shape than the ``batch x 3 x S x S`` input the model zoo makes, or of another zoo model
    (two plain names that differ; ``package.module:factory`` specs are left to the operator check
    after the capture).  A profile without these records passes."""
    meta = profile.meta or {}
    prof = meta.get("profile") if isinstance(meta.get("profile"), dict) else {}
    inputs = prof.get("inputs") if isinstance(prof.get("inputs"), list) else []
    shapes = [i.get("shape") for i in inputs if isinstance(i, dict)]
    want = [[batch, 3, image_size, image_size]]
    if shapes and shapes != want:
        raise GraphError(f"{where} was measured with input shape(s) {shapes}, this model gets {want} "
                         "(profile it at this --image-size and --batch)")
    info = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    other = info.get("name")
    if isinstance(other, str) and ":" not in other and ":" not in model and other != model:
        raise GraphError(f"{where} was measured on model {other}, not {model}")


def check_profile_file(source: str | None, model: str, image_size: int, batch: int = 1,
                       names: tuple[str, ...] = ()) -> None:
    """Before any capture: a ``--cost`` value is None, one of ``names`` (e.g. ``profile`` or a GPU)
    or an existing profile file that passes :func:`check_profile_input`."""
    if source is None or source in names:
        return
    if not Path(source).is_file():
        raise GraphError(f"--cost {source!r} is neither {', '.join(map(repr, names[:1]))}"
                         f"{', a GPU (' + ', '.join(names[1:]) + ')' if len(names) > 1 else ''} nor an existing file")
    check_profile_input(load_graph(source), model, image_size, batch, f"profile {source}")
