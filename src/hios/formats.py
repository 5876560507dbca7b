"""Graph file formats, chosen by extension, and the safe reading of every file hios takes.

* ``.json`` — the project's own format, versioned; round-trips exactly::

    {"format": "hios-graph", "version": 1, "name": ..., "meta": {...},
     "operators": [{"name", "cost", "kind", "output_bytes", "utilization", "meta"}...],
     "edges": [{"src", "dst", "bytes", "time"}...]}

  A measured profile (``hios profile -o``) is such a graph whose ``meta.profile`` records how it
  was measured (:func:`read_profile_meta` checks every field hios uses).

* ``.txt`` — the text format of the HIOS reference simulation: the operator count, then one
  ``id weight utilization`` line per operator, the edge count, then one ``u v weight`` line
  per edge (weights in ms; the edge weight is its transfer time).

Every reader of a hios file (graph, schedule, plan, profile, run record, profile cache entry) takes
its text from :func:`read_text`: a regular file only (a FIFO, a device such as ``/dev/zero`` or a
folder is refused without reading it: checked with ``stat`` before opening and again on the opened,
non-blocking descriptor), at most :data:`hios.limits.MAX_FILE_BYTES` bytes, UTF-8.  Its fields are
checked with :mod:`hios.fields`; every error names the file and the field path (or, for text, the
line).
"""

from __future__ import annotations

import json
import numbers
import os
import stat
from pathlib import Path

from .errors import option
from .fields import Field
from .graph import Edge, Graph, GraphError, Operator
from .limits import MAX_BATCH, MAX_BYTES, MAX_COST_MS, MAX_FILE_BYTES, MAX_IMAGE_SIZE, WHY, number_problem
from .outputs import atomic_write_text

__all__ = ["DTYPES", "GRAPH_FORMAT", "GRAPH_VERSION", "check_profile_file", "check_profile_input",
           "graph_from_dict", "graph_to_dict", "load_graph", "parse_json", "read_cache_entry", "read_graph",
           "read_json", "read_profile_meta", "read_stage_model", "read_text", "read_txt", "save_graph",
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


#: Element types a plan may name (``torch.<name>`` of PyTorch's plain dtypes); anything else is refused.
DTYPES = ("float32", "float64", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
          "float8_e5m2fnuz", "complex32", "complex64", "complex128", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool")


def graph_from_dict(d: dict, where: str = "graph") -> Graph:
    """The graph in the parsed JSON ``d`` of the file ``where`` (see :func:`read_graph`)."""
    return read_graph(Field(d, where))


def read_graph(f: Field) -> Graph:
    """The hios graph at ``f`` (a whole file or a plan's, run record's or cache entry's ``graph``):
    format, version, name, meta (:func:`read_graph_meta`), every operator and edge field typed;
    the :class:`~hios.graph.Graph` checks the rest (names, ranges, cycles)."""
    if not isinstance(f.value, dict) or f.value.get("format") != GRAPH_FORMAT:
        raise f.problem(f"not a hios graph (expected \"format\": \"{GRAPH_FORMAT}\")")
    f["version"].version(GRAPH_VERSION, "graph")
    name, meta = f.get("name"), f.get("meta", nullable=True)
    name, meta = name.string() if name else "graph", read_graph_meta(meta) if meta else None
    ops = [_operator(v, f, "operators", k) for k, v in enumerate(_list(f, "operators"))]
    edges = [_edge(v, f, "edges", k) for k, v in enumerate(_list(f, "edges"))]
    try:
        return Graph(ops, edges, name, meta)
    except GraphError as e:  # names, cycles: the message names the operator
        raise f.problem(str(e)) from None


def _list(f: Field, key: str) -> list:
    """The optional list ``f.key`` (raw values; [] when absent)."""
    items = f.get(key)
    if items is not None and not isinstance(items.value, list):
        raise items.fail("a list")
    return items.value if items is not None else []


_NUM = (int, float)


def _operator(d, f: Field, key: str, k: int) -> Operator:
    """Operator ``k`` of ``f.key``.  The common case (every field of the right type and in range)
    is taken at once; any other is read field by field, for a message with the field path."""
    if type(d) is dict:
        name, cost, kind, nbytes = d.get("name"), d.get("cost", 0.0), d.get("kind", "generic"), d.get("output_bytes", 0)
        util, meta = d.get("utilization", 1.0), d.get("meta")
        if (type(name) is str and name and type(cost) in _NUM and type(kind) is str and type(nbytes) in _NUM
                and type(util) in _NUM and (meta is None or type(meta) is dict)
                and 0 <= cost <= MAX_COST_MS and 0 <= nbytes <= MAX_BYTES and 0 < util <= 1):
            return Operator(name, cost, kind, nbytes, util, dict(meta or {}))
    o = Field(d, f.where, Field(f.value[key], f.where, f, key), k)
    kind, meta = o.get("kind"), o.get("meta", nullable=True)
    return Operator(o["name"].string(nonempty=True), _num(o, "cost", 0.0, MAX_COST_MS),
                    kind.string() if kind else "generic", _num(o, "output_bytes", 0, MAX_BYTES),
                    _num(o, "utilization", 1.0, 1.0, positive=True), dict(meta.obj()) if meta else {})


def _edge(d, f: Field, key: str, k: int) -> Edge:
    """Edge ``k`` of ``f.key``, as :func:`_operator` reads operators."""
    if type(d) is dict:
        src, dst, nbytes, time = d.get("src"), d.get("dst"), d.get("bytes", 0), d.get("time")
        if (type(src) is str and type(dst) is str and type(nbytes) in _NUM and 0 <= nbytes <= MAX_BYTES
                and (time is None or (type(time) in _NUM and 0 <= time <= MAX_COST_MS))):
            return Edge(src, dst, nbytes, time)
    e = Field(d, f.where, Field(f.value[key], f.where, f, key), k)
    time = e.get("time", nullable=True)
    return Edge(e["src"].string(), e["dst"].string(), _num(e, "bytes", 0, MAX_BYTES),
                time.number(0.0, MAX_COST_MS, why=WHY["cost"]) if time else None)


def _num(f: Field, key: str, default, maximum: float, positive: bool = False):
    """The optional number ``f.key`` in ``[0, maximum]`` (``(0, maximum]`` when ``positive``)."""
    v = f.get(key)
    return default if v is None else v.number(0.0, maximum, positive, _why(maximum))


def _why(maximum: float) -> str:
    """The reason for a limit of :mod:`hios.limits` (none for a bound like 1 of a fraction)."""
    return WHY["cost"] if maximum == MAX_COST_MS else WHY["bytes"] if maximum == MAX_BYTES else ""


def _shape_list(f: Field) -> None:
    """``inputs``: ``[{"shape": [int...], "dtype": str, "name": str}...]`` (each key optional; the
    shape and dtype of an input that is not a tensor are null)."""
    for i in f.items():
        i.obj()
        shape, dtype, name = i.get("shape", nullable=True), i.get("dtype", nullable=True), i.get("name")
        if shape:
            for n in shape.items():
                n.integer(0)
        if dtype:
            dtype.string()
        if name:
            name.string()


def read_graph_meta(f: Field) -> dict:
    """A graph's ``meta``: an object whose fields hios uses are typed: ``inputs`` (shapes the plan
    was made for), ``model`` (what a profile was measured on) and ``profile``."""
    d = f.obj()
    ins, model, prof = f.get("inputs"), f.get("model"), f.get("profile")
    if ins:
        _shape_list(ins)
    if model:
        model["name"].string(nonempty=True)
        for key, most in (("image_size", MAX_IMAGE_SIZE), ("batch", MAX_BATCH)):
            v = model.get(key, nullable=True)
            if v:
                v.integer(1, most)
    if prof:
        read_profile_meta(prof)
    return dict(d)


#: Fields of ``meta.profile`` that are strings, booleans, objects and numbers when present.
_PROFILE_STRINGS = ("device", "device_type", "kernels", "precision", "memory_format", "method", "folding",
                    "date", "utilization")
_PROFILE_OBJECTS = ("versions", "settings", "transfer", "compile", "launch_overhead")
_PROFILE_NUMBERS = ("sum_ms", "timing_seconds", "seconds")


def read_profile_meta(f: Field) -> dict:
    """A profile's ``meta.profile``: the settings it was measured under (strings, ``freezing`` a
    boolean), its input shapes, its measured concurrent groups (``{"ops": [names], "costs": [ms],
    "time": ms}``, as many costs as operators), its fitted stage and concurrency models and its
    feedback rounds."""
    d = f.obj()
    for key in _PROFILE_STRINGS:
        v = f.get(key)
        if v:
            v.string()
    for key in _PROFILE_OBJECTS:
        v = f.get(key, nullable=True)
        if v:
            v.obj()
    for key in _PROFILE_NUMBERS:
        v = f.get(key, nullable=True)
        if v:
            v.number()
    freezing, ins = f.get("freezing"), f.get("inputs")
    if freezing:
        freezing.boolean()
    if ins:
        _shape_list(ins)
    groups = f.get("groups", nullable=True)
    for g in groups.items() if groups else []:
        ops = [n.string() for n in g["ops"].items(nonempty=True)]
        costs = [c.number(0.0, MAX_COST_MS, why=WHY["cost"]) for c in g["costs"].items(nonempty=True)]
        if len(costs) != len(ops):
            raise g.problem(f"{len(ops)} ops but {len(costs)} costs")
        g["time"].number(0.0, MAX_COST_MS, why=WHY["cost"])
    stage, conc, fb = f.get("stage_model", nullable=True), f.get("concurrency", nullable=True), \
        f.get("feedback", nullable=True)
    if stage:
        read_stage_model(stage)
    if conc:
        _concurrency_model(conc)
    if fb:
        rounds = fb.get("rounds")
        if rounds:
            rounds.integer(0)
    return d


def read_stage_model(f: Field) -> dict:
    """A stage model as :meth:`~hios.cost.costmodel.HIOSStageModel.to_dict` and its siblings write it
    (``{}``: the default HIOS model): ``type`` hios, measured or concurrency, with ``alpha`` in [0, 1], measured
    ``groups`` (``{"costs": [ms...], "time": ms}``) or ``beta`` in [0, 1] and ``overhead_ms``."""
    d = f.obj()
    kind = f["type"].string(choices=("hios", "measured", "concurrency")) if d else "hios"
    if kind == "concurrency":
        return _concurrency_model(f)
    alpha = f.get("alpha")
    if alpha:
        alpha.number(0.0, 1.0)
    groups = f.get("groups") if kind == "measured" else None
    for g in groups.items() if groups else []:
        for c in g["costs"].items(nonempty=True):
            c.number(0.0, MAX_COST_MS, why=WHY["cost"])
        g["time"].number(0.0, MAX_COST_MS, why=WHY["cost"])
    return d


def _concurrency_model(f: Field) -> dict:
    """A concurrency model (``beta`` in [0, 1], ``overhead_ms`` >= 0, ``fit`` an object)."""
    d = f.obj()
    beta, over, fit = f.get("beta"), f.get("overhead_ms"), f.get("fit", nullable=True)
    if beta:
        beta.number(0.0, 1.0)
    if over:
        over.number(0.0, MAX_COST_MS, why=WHY["cost"])
    if fit:
        fit.obj()
    return d


def _txt_num(tok: str, what: str, where: str, line: int) -> float:
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
            _txt_num(toks[1], "weight", where, ln)
            _txt_num(toks[2], "utilization", where, ln)
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
            _txt_num(wt, "edge weight", where, ln)
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


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (None when it is)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_text(path: str | Path, what: str = "file", limit: int | None = None) -> str:
    """The text of ``path``; a one-line GraphError naming the file when it cannot be read, is not a
    regular file (a FIFO, a device, a folder: refused before it is opened, so nothing blocks or
    streams forever), is larger than ``limit`` bytes (default :data:`hios.limits.MAX_FILE_BYTES`)
    or is not UTF-8 text."""
    p = Path(path)
    limit = MAX_FILE_BYTES if limit is None else limit
    label = "" if what == "file" else " " + what

    def refuse(why: str) -> GraphError:
        return GraphError(f"{p}: cannot read{label}: {why}")
    try:
        kind = _not_regular(os.stat(p).st_mode)
        if kind:
            raise refuse(f"it is {kind}, not a regular file")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            kind = _not_regular(st.st_mode)  # replaced between the stat and the open
            if kind:
                raise refuse(f"it is {kind}, not a regular file")
            if st.st_size > limit:
                raise _too_big(p, label, st.st_size, limit)
            data = fh.read(limit + 1)
    except OSError as e:
        raise refuse(e.strerror or str(e)) from None
    if len(data) > limit:  # grew after the fstat
        raise _too_big(p, label, len(data), limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphError(f"{p}: not a text file") from None


def _too_big(p: Path, label: str, size: int, limit: int) -> GraphError:
    return GraphError(f"{p}: cannot read{label}: {size} bytes, above the limit of {limit / 2 ** 20:g} MiB "
                      f"({WHY['file_bytes']}; see hios.limits)")


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


def read_cache_entry(path: str | Path, fmt: str, version: int) -> tuple[dict, str, dict, Graph]:
    """A profile cache entry ``{"format": fmt, "version": version, "key": {...}, "hash": str,
    "graph": <hios graph>}`` read and checked field by field: ``(key, hash, graph as JSON, graph)``.
    Any problem (unreadable, not a regular file, too big, invalid JSON, a bad field) is a one-line
    GraphError naming the file and the field; whether the key and hash match is the cache's
    business (:mod:`hios.cost.profile_cache`)."""
    f = Field(read_json(path, "profile cache entry"), str(path))
    if not isinstance(f.value, dict) or f.value.get("format") != fmt:
        raise f.problem(f"not a hios profile cache entry (expected \"format\": \"{fmt}\")")
    f["version"].version(version, "profile cache entry")
    key, digest, graph = f["key"].obj(), f["hash"].string(nonempty=True), f["graph"]
    return key, digest, graph.obj(), read_graph(graph)


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
                         f"(profile it at this {option('image_size')} and {option('batch')})")
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
        raise GraphError(f"{option('cost')} {source!r} is neither {', '.join(map(repr, names[:1]))}"
                         f"{', a GPU (' + ', '.join(names[1:]) + ')' if len(names) > 1 else ''} nor an existing file")
    check_profile_input(load_graph(source), model, image_size, batch, f"profile {source}")
