"""Graph files: own JSON (versioned, exact round trip) and the HIOS text format (errors with line numbers)."""

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from hios.formats import graph_from_dict, graph_to_dict, load_graph, read_txt, save_graph, write_txt
from hios.graph import Edge, Graph, GraphError, Operator
from strategies import dags


def rich_graph():
    ops = [Operator("in", 0.1, "input", 1024, 1.0, {"shape": [1, 3, 224, 224]}),
           Operator("conv 1", 1 / 3, "conv2d", 3 * 2**20, 0.7, {"fused": ["relu"]}),
           Operator("pool", 0.0, "pool", 77, 0.05)]
    edges = [Edge("in", "conv 1", 1024), Edge("conv 1", "pool", 3 * 2**20, 0.125), Edge("in", "pool", 0, 1e-9)]
    return Graph(ops, edges, "rich", {"source": "test", "nested": {"a": [1, 2.5, None]}})


def assert_same(g, h):
    assert graph_to_dict(g) == graph_to_dict(h)
    for a, b in zip(g.ops, h.ops):
        assert a == b and a.meta == b.meta
        assert type(a.cost) is type(b.cost)
    assert g.edges == h.edges and g.name == h.name and g.meta == h.meta


def test_json_round_trip_exact(tmp_path):
    g = rich_graph()
    p = tmp_path / "g.json"
    save_graph(g, p)
    d = json.loads(p.read_text())
    assert d["format"] == "hios-graph" and d["version"] == 1
    h = load_graph(p)
    assert_same(g, h)
    save_graph(h, tmp_path / "h.json")
    assert (tmp_path / "h.json").read_text() == p.read_text()


@settings(max_examples=40, deadline=None)
@given(dags(max_nodes=10))
def test_json_round_trip_property(g):
    h = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))
    assert_same(g, h)


@settings(max_examples=40, deadline=None)
@given(dags(max_nodes=10, edge_kind="time"))
def test_txt_round_trip_property(g):
    h = read_txt(write_txt(g), "x.txt", name=g.name)
    assert [(o.name, o.cost, o.utilization) for o in g.ops] == [(o.name, o.cost, o.utilization) for o in h.ops]
    assert [(e.src, e.dst, e.time) for e in g.edges] == [(e.src, e.dst, e.time) for e in h.edges]


def test_txt_reference_example(tmp_path):
    p = tmp_path / "ref.txt"
    p.write_text("3\n0 1.5 0.8\n1 2.0 1.0\n\n2 0.5 0.6\n2\n0 1 1.6\n1 2 0.4\n")
    g = load_graph(p)
    assert g.name == "ref" and g.names == ["0", "1", "2"]
    assert g.costs == [1.5, 2.0, 0.5] and [o.utilization for o in g.ops] == [0.8, 1.0, 0.6]
    assert [(e.src, e.dst, e.time, e.bytes) for e in g.edges] == [("0", "1", 1.6, 0), ("1", "2", 0.4, 0)]


def test_txt_utilization_optional():
    g = read_txt("2\na 1\nb 2 0.5\n1\na b 0\n")
    assert [o.utilization for o in g.ops] == [1.0, 0.5]


GOOD = "3\n0 1.5 0.8\n1 2.0 1.0\n2 0.5 0.6\n2\n0 1 1.6\n1 2 0.4\n"

TXT_ERRORS = [
    # (text, line, fragment)
    ("", 1, "operator count"),
    ("x\n", 1, "operator count"),
    ("-1\n", 1, "operator count"),
    ("2.0\n", 1, "operator count"),
    ("²\n", 1, "operator count"),
    ("2\n0 1.0 1.0\n", 3, "missing line"),
    ("2\n0 1.0 1.0\n1 abc 1.0\n0\n", 3, "not a number"),
    ("2\n0 1.0 1.0\n1 1.0 zz\n0\n", 3, "not a number"),
    ("2\n0 1.0 1.0\n1 -1.0 1.0\n0\n", 3, "invalid weight"),
    ("2\n0 1.0 1.0\n1 nan 1.0\n0\n", 3, "invalid weight"),
    ("2\n0 1.0 1.0\n1 inf 1.0\n0\n", 3, "invalid weight"),
    ("2\n0 1.0 1.0\n1 1.0 1.5\n0\n", 3, "utilization"),
    ("2\n0 1.0 1.0\n1 1.0 0\n0\n", 3, "utilization"),
    ("2\n0 1.0 1.0\n1 1.0 1.0 7\n0\n", 3, "id weight utilization"),
    ("2\n0 1.0 1.0\n0 1.0 1.0\n0\n", 3, "duplicate operator"),
    ("3\n0 1.0 1.0\n1 1.0 1.0\n1\n0 1 0.5\n", 4, "operator count wrong"),   # count too big
    ("1\n0 1.0 1.0\n1 1.0 1.0\n0\n", 3, "operator count wrong"),            # count too small
    ("2\n0 1 1\n1 1 1\n", 4, "missing line: expected the edge count"),
    ("2\n0 1 1\n1 1 1\n2\n0 1 0.5\n", 6, "missing line"),                   # edge count too big
    ("2\n0 1 1\n1 1 1\n1\n0 1 0.5\n1 0 0.5\n", 6, "edge count wrong"),     # edge count too small
    ("2\n0 1 1\n1 1 1\n1\n0 1\n", 5, "u v weight"),
    ("2\n0 1 1\n1 1 1\n1\n0 1 w\n", 5, "not a number"),
    ("2\n0 1 1\n1 1 1\n1\n0 1 -2\n", 5, "invalid weight"),
    ("2\n0 1 1\n1 1 1\n1\n0 7 0.5\n", 5, "unknown operator '7'"),
    ("2\n0 1 1\n1 1 1\n1\n1 1 0.5\n", 5, "self-loop"),
    ("2\n0 1 1\n1 1 1\n2\n0 1 0.5\n\n0 1 0.7\n", 7, "duplicate edge"),
]


@pytest.mark.parametrize("text,line,fragment", TXT_ERRORS)
def test_txt_errors_name_the_line(tmp_path, text, line, fragment):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(GraphError) as ei:
        load_graph(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}:{line}: "), msg
    assert fragment in msg


def test_txt_cycle_names_operators(tmp_path):
    p = tmp_path / "cyc.txt"
    p.write_text("3\n0 1 1\n1 1 1\n2 1 1\n3\n0 1 0\n1 2 0\n2 1 0\n")
    with pytest.raises(GraphError, match=r"cycle: (1 -> 2 -> 1|2 -> 1 -> 2)"):
        load_graph(p)


def test_write_txt_refuses_what_it_cannot_hold():
    with pytest.raises(GraphError, match="no explicit time"):
        write_txt(Graph([Operator("a"), Operator("b")], [Edge("a", "b", 100)]))
    with pytest.raises(GraphError, match="white space"):
        write_txt(Graph([Operator("a b")], []))


JSON_ERRORS = [
    ("[1, 2]", "not a hios graph"),
    ('{"format": "other"}', "not a hios graph"),
    ('{"format": "hios-graph", "version": 2, "operators": []}', "version"),
    ('{"format": "hios-graph", "version": "1", "operators": []}', "version"),
    ('{"format": "hios-graph", "version": true, "operators": []}', "version"),
    ('{"format": "hios-graph", "version": 1, "operators": []}', "empty"),
    ('{"format": "hios-graph", "version": 1, "operators": 5}', "operators: expected a list, got 5"),
    ('{"format": "hios-graph", "version": 1, "operators": [[1]]}', "operators[0]: expected an object, got a list of 1"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"cost": 1}]}', "operators[0].name: missing"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a", "meta": 3}]}',
     "operators[0].meta: expected an object, got 3"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a", "cost": NaN}]}',
     "operators[0].cost: expected a finite number, got nan"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a", "cost": "1"}]}',
     "operators[0].cost: expected a number, got '1'"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a"}], "edges": [{"src": "a"}]}',
     "edges[0].dst: missing"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a"}], "edges": ["a"]}',
     "edges[0]: expected an object, got 'a'"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a"}], "edges": [{"src": ["a"], "dst": "a"}]}',
     "edges[0].src: expected a string, got a list of 1"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a"}], "edges": [{"src": "a", "dst": "b"}]}',
     "unknown operator 'b'"),
    ('{"format": "hios-graph", "version": 1, "operators": [{"name": "a"}], "meta": [1]}',
     "meta: expected an object, got a list of 1"),
]


@pytest.mark.parametrize("text,fragment", JSON_ERRORS)
def test_json_errors(tmp_path, text, fragment):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(GraphError) as ei:
        load_graph(p)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg and fragment in msg, msg


def test_invalid_json_has_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n "format": "hios-graph",\n "version": 1,,\n}')
    with pytest.raises(GraphError, match=rf"^{p}:3: invalid JSON"):
        load_graph(p)


def test_file_level_errors(tmp_path):
    with pytest.raises(GraphError, match="cannot read"):
        load_graph(tmp_path / "missing.txt")
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(GraphError, match="cannot read"):
        load_graph(tmp_path / "dir.txt")
    (tmp_path / "g.yaml").write_text("x")
    with pytest.raises(GraphError, match="unknown graph format"):
        load_graph(tmp_path / "g.yaml")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(GraphError, match="not a text file"):
        load_graph(tmp_path / "bin.txt")
    g = Graph([Operator("a", 1.0)], [])
    with pytest.raises(GraphError, match="cannot write"):
        save_graph(g, tmp_path / "no" / "such" / "dir.json")
    with pytest.raises(GraphError, match="unknown graph format"):
        save_graph(g, tmp_path / "g.csv")


def test_extension_is_case_insensitive(tmp_path):
    g = Graph([Operator("a", 1.5, utilization=0.9)], [])
    save_graph(g, tmp_path / "G.TXT")
    assert load_graph(tmp_path / "G.TXT").ops[0].cost == 1.5
    save_graph(g, tmp_path / "G.Json")
    assert_same(load_graph(tmp_path / "G.Json"), Graph(g.ops, g.edges, g.name))


def test_txt_float_text_round_trips_exactly(tmp_path):
    g = Graph([Operator("a", 0.1 + 0.2, utilization=1 / 3), Operator("b", math.pi)], [Edge("a", "b", time=2 / 7)])
    save_graph(g, tmp_path / "g.txt")
    h = load_graph(tmp_path / "g.txt")
    assert h.ops[0].cost == 0.1 + 0.2 and h.ops[0].utilization == 1 / 3 and h.edges[0].time == 2 / 7


def test_numpy_numbers_are_saved_as_plain_json(tmp_path):
    np = pytest.importorskip("numpy")
    g = Graph([Operator("a", np.float32(1.5), output_bytes=np.int64(4), utilization=np.float64(0.5)),
               Operator("b", np.float64(2.0))], [Edge("a", "b", np.int64(8), np.float32(0.25))])
    save_graph(g, tmp_path / "g.json")
    h = load_graph(tmp_path / "g.json")
    assert h.ops[0].cost == 1.5 and type(h.ops[0].output_bytes) is int and h.edges[0].time == 0.25


TOKENS = ["0", "1", "2", "-1", "1.5", "nan", "inf", "x", "", "3 4", "0 1 0.5", "1e309", "0.0", "²", "\t"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["drop", "dup", "replace", "append"]),
                          st.sampled_from(TOKENS)), max_size=4))
def test_txt_fuzz_only_graph_errors(edits):
    """Whatever a file holds, reading it gives a Graph or a one-line GraphError, never another exception."""
    lines = GOOD.splitlines()
    for pos, op, tok in edits:
        k = pos % (len(lines) + 1)
        if op == "drop" and k < len(lines):
            del lines[k]
        elif op == "dup" and k < len(lines):
            lines.insert(k, lines[k])
        elif op == "replace" and k < len(lines):
            toks = lines[k].split() or [""]
            toks[pos % len(toks)] = tok
            lines[k] = " ".join(toks)
        else:
            lines.insert(k, tok)
    try:
        read_txt("\n".join(lines), "f.txt")
    except GraphError as e:
        assert "\n" not in str(e) and str(e).startswith("f.txt:")


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(
                        ["name", "cost", "src", "dst", "bytes", "time", "meta", "utilization", "output_bytes",
                         "kind", "operators", "edges", "format", "version"]), kids, max_size=4), max_leaves=12),
       st.sampled_from(["operators", "edges", "meta", "name", "version"]))
def test_json_fuzz_only_graph_errors(junk, key):
    d = {"format": "hios-graph", "version": 1, "operators": [{"name": "a"}, {"name": "b"}],
         "edges": [{"src": "a", "dst": "b"}]}
    d[key] = junk
    try:
        graph_from_dict(d, "f.json")
    except GraphError as e:
        assert "\n" not in str(e)
