"""Layered random DAG generator of the HIOS study."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from hios.cli import main as cli_main
from hios.formats import load_graph
from hios.generate import layered_dag
from hios.graph import GraphError


def layers_of(g):
    sizes = g.meta["layer_sizes"]
    layer = [k for k, s in enumerate(sizes) for _ in range(s)]
    return sizes, {op.name: layer[i] for i, op in enumerate(g.ops)}


def check_structure(g, nodes, edges, layers, comm_ratio):
    sizes, layer = layers_of(g)
    assert len(g) == nodes and len(g.edges) == edges
    assert len(sizes) == layers + 2 and sizes[0] == 1 and sizes[-1] == 1 and sum(sizes) == nodes
    assert all(math.ceil(layers / 2) <= s <= 10 * layers for s in sizes[1:-1])
    assert g.sources() == [0] and g.sinks() == [nodes - 1]
    for e in g.edges:
        assert layer[e.src] < layer[e.dst]
        assert e.bytes == 0
        assert e.time == pytest.approx(g[e.dst].cost * comm_ratio, abs=1e-6)
    for i, op in enumerate(g.ops):
        assert 0.1 <= op.cost <= 4.0 and 0.6 <= op.utilization <= 1.0
        lk = layer[op.name]
        if lk < len(sizes) - 1:
            assert any(layer[g.ops[v].name] == lk + 1 for v in g.succs[i]), f"{op.name} has no edge to next layer"
        if lk > 0:
            assert any(layer[g.ops[u].name] == lk - 1 for u in g.preds[i]), f"{op.name} has no edge from previous"


def test_default_study_graph():
    g = layered_dag(200, 400, 8, 0.8, 1)
    check_structure(g, 200, 400, 8, 0.8)
    # the layered graph is connected through the single source and sink
    assert all(g.ancestors_mask()[199] >> i & 1 for i in range(199))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10**6), st.floats(0.0, 3.0), st.data())
def test_structure_property(layers, seed, cr, data):
    lo, hi = math.ceil(layers / 2), 10 * layers
    nodes = data.draw(st.integers(lo * layers + 2, min(hi * layers, 60) + 2))
    # linking consecutive layers takes at most 2 * (nodes - 1) edges
    edges = data.draw(st.integers(2 * (nodes - 1), 2 * (nodes - 1) + 40))
    try:
        g = layered_dag(nodes, edges, layers, cr, seed)
    except GraphError as e:
        assert "too many" in str(e)  # small graphs admit few forward edges
        return
    check_structure(g, nodes, edges, layers, cr)


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = layered_dag(120, 300, 6, 0.5, 7), layered_dag(120, 300, 6, 0.5, 7), layered_dag(120, 300, 6, 0.5, 8)
    key = lambda g: ([(o.name, o.cost, o.utilization) for o in g.ops], [(e.src, e.dst, e.time) for e in g.edges])
    assert key(a) == key(b) and key(a) != key(c)


def test_cli_same_seed_same_file(tmp_path, capsys):
    args = ["generate", "--nodes", "200", "--edges", "400", "--layers", "8", "--comm-ratio", "0.8", "--seed", "1"]
    assert cli_main(args + ["-o", str(tmp_path / "a.txt")]) == 0
    assert cli_main(args + ["-o", str(tmp_path / "b.txt")]) == 0
    assert cli_main(args[:-1] + ["2", "-o", str(tmp_path / "c.txt")]) == 0
    a, b, c = ((tmp_path / f"{x}.txt").read_bytes() for x in "abc")
    assert a == b and a != c
    assert a.splitlines()[0] == b"200" and a.splitlines()[201] == b"400"
    from_file = load_graph(tmp_path / "a.txt")
    assert len(from_file) == 200 and len(from_file.edges) == 400
    assert "wrote" in capsys.readouterr().err
    assert cli_main(args + ["-o", str(tmp_path / "a.json")]) == 0
    j = load_graph(tmp_path / "a.json")
    check_structure(j, 200, 400, 8, 0.8)


@pytest.mark.parametrize("kw,fragment", [
    (dict(nodes=200, edges=100), "too few"),
    (dict(nodes=12, edges=60, layers=1), "too many"),
    (dict(nodes=5, edges=10, layers=8), "cannot fill"),
    (dict(nodes=1000, edges=2000, layers=2), "cannot fill"),
    (dict(layers=0), "layers must"),
    (dict(nodes=2, edges=1, layers=1), "nodes must"),
    (dict(comm_ratio=-0.1), "comm_ratio must"),
    (dict(comm_ratio=float("nan")), "comm_ratio must"),
    (dict(comm_ratio=float("inf")), "comm_ratio must"),
])
def test_bad_arguments(kw, fragment):
    """The library names its arguments (the CLI shows its flags: tests/test_cli_foundation.py)."""
    with pytest.raises(GraphError, match=fragment) as e:
        layered_dag(**kw)
    assert "--" not in str(e.value)


def test_edge_count_extremes():
    # nodes=5, one inner layer of 3: forward pairs 1*3 + 3*1 + 1*1 = 7
    g = layered_dag(5, 7, 1, 1.0, 3)
    assert len(g.edges) == 7 and g.meta["layer_sizes"] == [1, 3, 1]
    with pytest.raises(GraphError, match="too many"):
        layered_dag(5, 8, 1, 1.0, 3)
    g = layered_dag(5, 6, 1, 1.0, 3)  # the linking edges alone (3 + 3) suffice
    check_structure(g, 5, 6, 1, 1.0)
