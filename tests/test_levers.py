"""Levers that shorten the critical path (issue 13): merged segments (torch-free), fused
convolution epilogues and critical-path stream priorities, each checked against the plan / model(x)."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.runtime.segmenting import stream_program
from hios.schedule import Schedule

from test_runtime import random_stages


# ----------------------------------------------------------------------------- merged segments
def _happens_before(prog):
    """For each step, the set of steps it is ordered after (itself excluded), from streams and events."""
    after: list[set[int]] = []
    last_on: dict = {}
    rec: dict[int, int] = {}
    for k, s in enumerate(prog.steps):
        m: set[int] = set()
        for e in (s.waits if s.kind == "segment" else (s.wait,)):
            m |= after[rec[e]] | {rec[e]}
        if s.kind == "segment":
            key = (s.device, s.stream)
            if key in last_on:
                m |= after[last_on[key]] | {last_on[key]}
            last_on[key] = k
            if s.record is not None:
                rec[s.record] = k
        else:
            rec[s.record] = k
        after.append(m)
    return after


def _op_order(graph, prog):
    """Pairs (a, b) of operators in different segments that the program orders a before b."""
    after = _happens_before(prog)
    pairs = set()
    for k, s in enumerate(prog.steps):
        if s.kind != "segment":
            continue
        for j in after[k]:
            o = prog.steps[j]
            if o.kind == "segment":
                pairs |= {(a, b) for a in o.ops for b in s.ops}
    return pairs


def _closure(names, edges):
    succ = {n: set() for n in names}
    for a, b in edges:
        succ[a].add(b)
    out = set()
    for n in names:
        stack, seen = list(succ[n]), set()
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(succ[v])
        out |= {(n, v) for v in seen}
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), devices=st.integers(1, 3), width=st.integers(1, 4),
       shared=st.booleans(), sync=st.sampled_from(["data", "stage"]))
def test_merged_segments_keep_the_plan_order(seed, devices, width, shared, sync):
    g = layered_dag(24, 50, 5, 0.5, seed)
    sched = random_stages(g, devices, width, random.Random(seed))
    mem = ["m"] * devices if shared else None
    plain = stream_program(g, sched, memory=mem, sync=sync)
    merged = stream_program(g, sched, memory=mem, sync=sync, merge=True)  # verify() runs inside
    assert merged.placement == plain.placement
    assert len(merged.segments) <= len(plain.segments) and merged.events <= plain.events
    # each merged segment is a run of consecutive plain segments of one stream
    for s in merged.segments:
        ids = [plain.segment_of[n] for n in s.ops]
        runs = [list(plain.steps[i].ops) for i in dict.fromkeys(ids)]
        assert [n for r in runs for n in r] == list(s.ops)
    # and the merged program orders operators exactly as the plan does (nothing added)
    stream_edges = []
    for key in {(s.device, s.stream) for s in plain.segments}:
        ops = [n for s in plain.segments if (s.device, s.stream) == key for n in s.ops]
        stream_edges += list(zip(ops, ops[1:]))
    assert _op_order(g, merged) <= _op_order(g, plain)
    if sync == "data":
        assert _op_order(g, merged) <= _closure(g.names, [(e.src, e.dst) for e in g.edges] + stream_edges)


def test_merge_runs_past_a_sync_point_that_orders_nothing_new():
    ops = [Operator("a", 1.0), Operator("b", 1.0), Operator("c", 1.0)]
    g = Graph(ops, [Edge("a", "b", 0), Edge("a", "c", 0), Edge("b", "c", 0)], "tiny")
    sched = Schedule([[("a",), ("b",), ("c",)]])
    smap = {"a": 0, "b": 0, "c": 1}
    plain = stream_program(g, sched, streams=smap)
    merged = stream_program(g, sched, streams=smap, merge=True)
    assert [s.ops for s in plain.segments] == [("a",), ("b",), ("c",)]
    assert sorted(s.ops for s in merged.segments) == [("a", "b"), ("c",)]
    assert merged.events == 1 and plain.events == 2
