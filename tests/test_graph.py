"""Graph model: validation errors name the culprit; index views are consistent."""

import math

import pytest
from hypothesis import given, settings

from hios.errors import HiosError
from hios.graph import Edge, Graph, GraphError, Operator
from strategies import dags


def diamond():
    ops = [Operator("a", 1.0), Operator("b", 2.0, utilization=0.5), Operator("c", 3.0), Operator("d", 0.5)]
    edges = [Edge("a", "b", 10), Edge("a", "c", time=0.2), Edge("b", "d"), Edge("c", "d", 5, 0.1)]
    return Graph(ops, edges, "diamond")


def test_operator_defaults():
    op = Operator("x")
    assert (op.cost, op.kind, op.output_bytes, op.utilization) == (0.0, "generic", 0, 1.0)
    e = Edge("x", "y")
    assert (e.bytes, e.time) == (0, None)


def test_index_views():
    g = diamond()
    assert len(g) == 4 and g.names == ["a", "b", "c", "d"]
    assert g.index == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert g["b"].utilization == 0.5
    assert g.preds[3] == [1, 2] and g.succs[0] == [1, 2]
    assert [u for u, _ in g.in_edges[3]] == [1, 2]
    assert g.in_edges[3][1][1].time == 0.1
    assert [v for v, _ in g.out_edges[0]] == [1, 2]
    assert g.topo == [0, 1, 2, 3]
    assert [g.position[i] for i in g.topo] == [0, 1, 2, 3]
    assert g.sources() == [0] and g.sinks() == [3]
    assert g.total_work() == pytest.approx(6.5)
    anc = g.ancestors_mask()
    assert anc[0] == 0 and anc[1] == 1 and anc[3] == 0b0111


def test_topo_is_stable_and_not_insertion_order():
    # d is inserted first but must come last.
    g = Graph([Operator("d"), Operator("a"), Operator("b")], [Edge("a", "d"), Edge("b", "d")])
    assert [g.ops[i].name for i in g.topo] == ["a", "b", "d"]


def test_with_costs_keeps_structure():
    g = diamond()
    h = g.with_costs([4, 3, 2, 1])
    assert h.costs == [4, 3, 2, 1] and h.edges == g.edges and h.name == g.name
    h2 = g.with_costs({"a": 1, "b": 1, "c": 1, "d": 1}, {"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.3})
    assert [op.utilization for op in h2.ops] == [0.3] * 4
    assert g.costs == [1.0, 2.0, 3.0, 0.5]  # original untouched
    with pytest.raises(GraphError, match="'a'"):
        g.with_costs([-1, 1, 1, 1])


def err(ops, edges):
    with pytest.raises(GraphError) as ei:
        Graph(ops, edges)
    msg = str(ei.value)
    assert "\n" not in msg
    assert isinstance(ei.value, HiosError) and isinstance(ei.value, ValueError)
    return msg


def test_rejects_empty():
    assert "empty" in err([], [])


def test_rejects_duplicate_name():
    assert "'a'" in err([Operator("a"), Operator("a")], [])


def test_rejects_unknown_endpoint():
    msg = err([Operator("a")], [Edge("a", "zz")])
    assert "'zz'" in msg and "unknown" in msg
    assert "'qq'" in err([Operator("a")], [Edge("qq", "a")])


def test_rejects_cycle_naming_it():
    ops = [Operator(x) for x in "abcde"]
    msg = err(ops, [Edge("a", "b"), Edge("b", "c"), Edge("c", "d"), Edge("d", "b"), Edge("d", "e")])
    assert "cycle" in msg
    chain = msg.split(": ", 1)[1].split(" -> ")
    assert chain[0] == chain[-1] and set(chain) == {"b", "c", "d"}
    edges = {("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("d", "e")}
    assert all(pair in edges for pair in zip(chain, chain[1:]))


def test_rejects_self_loop_and_duplicate_edge():
    assert "self-loop" in err([Operator("a")], [Edge("a", "a")])
    assert "duplicate edge" in err([Operator("a"), Operator("b")], [Edge("a", "b"), Edge("a", "b", 3)])


@pytest.mark.parametrize("cost", [-1.0, math.nan, math.inf, "1.0", None, True])
def test_rejects_bad_cost(cost):
    msg = err([Operator("ok", 1.0), Operator("bad", cost)], [])
    assert "'bad'" in msg and "cost" in msg


@pytest.mark.parametrize("u", [0.0, -0.5, 1.5, math.nan])
def test_rejects_bad_utilization(u):
    assert "'bad'" in err([Operator("bad", 1.0, utilization=u)], [])


def test_rejects_bad_edge_payload():
    ops = [Operator("a"), Operator("b")]
    assert "bytes" in err(ops, [Edge("a", "b", -5)])
    assert "time" in err(ops, [Edge("a", "b", 0, math.nan)])
    assert "time" in err(ops, [Edge("a", "b", 0, -1.0)])


def test_rejects_non_string_names_kinds_and_endpoints():
    assert "kind" in err([Operator("k", 1.0, 3)], [])
    assert "name" in err([Operator(3)], [])
    assert "name" in err([Operator("")], [])
    assert "endpoints" in err([Operator("a")], [Edge(["a"], "a")])


def test_zero_cost_and_edge_free_graph_ok():
    g = Graph([Operator("a", 0.0), Operator("b", 0.0)], [])
    assert g.topo == [0, 1] and g.total_work() == 0


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=12))
def test_topo_respects_every_edge(g):
    pos = g.position
    assert sorted(g.topo) == list(range(len(g)))
    for e in g.edges:
        assert pos[g.index[e.src]] < pos[g.index[e.dst]]
    anc = g.ancestors_mask()
    for v in range(len(g)):
        for u in g.preds[v]:
            assert anc[v] >> u & 1
            assert anc[v] & anc[u] == anc[u]
