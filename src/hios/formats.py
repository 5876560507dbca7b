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
from pathlib import Path

from .graph import Edge, Graph, GraphError, Operator

GRAPH_FORMAT = "hios-graph"
GRAPH_VERSION = 1


def graph_to_dict(graph: Graph) -> dict:
    return {
        "format": GRAPH_FORMAT, "version": GRAPH_VERSION, "name": graph.name, "meta": graph.meta,
        "operators": [{"name": op.name, "cost": op.cost, "kind": op.kind, "output_bytes": op.output_bytes,
                       "utilization": op.utilization, "meta": op.meta} for op in graph.ops],
        "edges": [{"src": e.src, "dst": e.dst, "bytes": e.bytes, "time": e.time} for e in graph.edges],
    }


def graph_from_dict(d: dict, where: str = "graph") -> Graph:
    if not isinstance(d, dict) or d.get("format") != GRAPH_FORMAT:
        raise GraphError(f"{where}: not a hios graph (expected \"format\": \"{GRAPH_FORMAT}\")")
    if not isinstance(d.get("version"), int) or d["version"] > GRAPH_VERSION:
        raise GraphError(f"{where}: unsupported graph version {d.get('version')!r}")
    ops = []
    for k, o in enumerate(d.get("operators", [])):
        try:
            ops.append(Operator(o["name"], o.get("cost", 0.0), o.get("kind", "generic"),
                                o.get("output_bytes", 0), o.get("utilization", 1.0), dict(o.get("meta") or {})))
        except (KeyError, TypeError):
            raise GraphError(f"{where}: operator #{k} is malformed (needs at least a name)") from None
    edges = []
    for k, e in enumerate(d.get("edges", [])):
        try:
            edges.append(Edge(e["src"], e["dst"], e.get("bytes", 0), e.get("time")))
        except (KeyError, TypeError):
            raise GraphError(f"{where}: edge #{k} is malformed (needs src and dst)") from None
    try:
        return Graph(ops, edges, d.get("name", "graph"), d.get("meta"))
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None


def _num(tok: str, what: str, where: str, line: int) -> float:
    try:
        return float(tok)
    except ValueError:
        raise GraphError(f"{where}:{line}: {what} {tok!r} is not a number") from None


def read_txt(text: str, where: str = "graph.txt", name: str | None = None) -> Graph:
    lines = [(k + 1, ln.split()) for k, ln in enumerate(text.splitlines())]
    lines = [(k, t) for k, t in lines if t]  # blank lines carry nothing
    pos = 0

    def take(what: str) -> tuple[int, list[str]]:
        nonlocal pos
        if pos >= len(lines):
            last = lines[-1][0] if lines else 0
            raise GraphError(f"{where}:{last + 1}: missing line: expected {what}")
        item = lines[pos]
        pos += 1
        return item

    ln, toks = take("the operator count")
    if len(toks) != 1 or not toks[0].isdigit():
        raise GraphError(f"{where}:{ln}: expected the operator count, got {' '.join(toks)!r}")
    n = int(toks[0])
    ops = []
    for _ in range(n):
        ln, toks = take(f"an 'id weight utilization' line ({n} operators declared)")
        if len(toks) not in (2, 3):
            raise GraphError(f"{where}:{ln}: expected 'id weight utilization', got {' '.join(toks)!r}")
        w = _num(toks[1], "weight", where, ln)
        u = _num(toks[2], "utilization", where, ln) if len(toks) == 3 else 1.0
        if not w >= 0:
            raise GraphError(f"{where}:{ln}: operator {toks[0]!r} has invalid weight {toks[1]!r}")
        if not 0 < u <= 1:
            raise GraphError(f"{where}:{ln}: operator {toks[0]!r} has utilization {toks[2]!r} outside (0, 1]")
        ops.append(Operator(toks[0], w, "generic", 0, u))
    ln, toks = take("the edge count")
    if len(toks) != 1 or not toks[0].isdigit():
        raise GraphError(f"{where}:{ln}: expected the edge count, got {' '.join(toks)!r}")
    m = int(toks[0])
    edges = []
    for _ in range(m):
        ln, toks = take(f"a 'u v weight' line ({m} edges declared)")
        if len(toks) != 3:
            raise GraphError(f"{where}:{ln}: expected 'u v weight', got {' '.join(toks)!r}")
        w = _num(toks[2], "edge weight", where, ln)
        if not w >= 0:
            raise GraphError(f"{where}:{ln}: edge {toks[0]} -> {toks[1]} has invalid weight {toks[2]!r}")
        edges.append(Edge(toks[0], toks[1], 0, w))
    if pos < len(lines):
        raise GraphError(f"{where}:{lines[pos][0]}: unexpected extra line after {m} edges")
    try:
        return Graph(ops, edges, name or Path(where).stem)
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None


def _fmt(x: float) -> str:
    return repr(float(x))


def write_txt(graph: Graph) -> str:
    out = [str(len(graph.ops))]
    out += [f"{op.name} {_fmt(op.cost)} {_fmt(op.utilization)}" for op in graph.ops]
    out.append(str(len(graph.edges)))
    for e in graph.edges:
        if e.time is None:
            raise GraphError(f"edge {e.src!r} -> {e.dst!r} has no explicit time; the .txt format needs one "
                             "(save as .json instead)")
        out.append(f"{e.src} {e.dst} {_fmt(e.time)}")
    return "\n".join(out) + "\n"


def load_graph(path: str | Path) -> Graph:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise GraphError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise GraphError(f"{p}: not a text file") from None
    if p.suffix == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraphError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from None
        return graph_from_dict(d, str(p))
    if p.suffix == ".txt":
        return read_txt(text, str(p))
    raise GraphError(f"{p}: unknown graph format {p.suffix!r} (use .json or .txt)")


def save_graph(graph: Graph, path: str | Path) -> None:
    p = Path(path)
    if p.suffix == ".json":
        p.write_text(json.dumps(graph_to_dict(graph), indent=1) + "\n")
    elif p.suffix == ".txt":
        p.write_text(write_txt(graph))
    else:
        raise GraphError(f"{p}: unknown graph format {p.suffix!r} (use .json or .txt)")
