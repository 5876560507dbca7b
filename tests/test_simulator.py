"""Simulator: hand-checked cases, rejection of bad schedules, and property tests over random
DAGs and random valid schedules."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from hios.bounds import critical_path, lower_bounds
from hios.cost.costmodel import HIOSStageModel
from hios.graph import Edge, Graph, Operator
from hios.machine import Link, Machine
from hios.schedule import Schedule
from hios.simulator import ScheduleError, Simulator, simulate
from strategies import dags, graph_and_schedule, random_valid_schedule, valid_schedules

EPS = 1e-9


def G(ops, edges, name="t"):
    return Graph([Operator(n, c, utilization=u) for n, c, u in ops], edges, name)


def sched(graph, stages):
    return Schedule([[tuple(st) for st in sts] for sts in stages])


# -- hand-checked cases ----------------------------------------------------------

def test_chain_on_one_gpu():
    g = G([("a", 1.0, 1), ("b", 2.0, 1), ("c", 0.5, 1)], [Edge("a", "b", 10**9), Edge("b", "c", time=5.0)])
    r = simulate(g, sched(g, [[["a"], ["b"], ["c"]]]), Machine(1))
    assert r.latency == 3.5 and r.start == [0.0, 1.0, 3.0] and r.end == [1.0, 3.0, 3.5]
    assert r.gpu_busy == [3.5] and r.transfers == []  # same-GPU edges are free
    assert r.stage_times == [[(0.0, 1.0), (1.0, 3.0), (3.0, 3.5)]]


def test_cross_gpu_explicit_time():
    g = G([("a", 1.0, 1), ("b", 2.0, 1)], [Edge("a", "b", 10**9, 0.75)])
    r = simulate(g, sched(g, [[["a"]], [["b"]]]), Machine(2, Link(1.0)))
    assert r.start[1] == pytest.approx(1.75) and r.latency == pytest.approx(3.75)
    (t,) = r.transfers
    assert (t.src, t.dst, t.src_gpu, t.dst_gpu) == ("a", "b", 0, 1)
    assert (t.start, t.end) == (1.0, pytest.approx(1.75))
    assert r.gpu_busy == [1.0, 2.0]


def test_cross_gpu_bytes_use_link():
    g = G([("a", 1.0, 1), ("b", 2.0, 1)], [Edge("a", "b", 2 * 10**9)])
    m = Machine(2, Link(4.0, 100.0))  # 2 GB at 4 GB/s = 500 ms, + 0.1 ms
    r = simulate(g, sched(g, [[["a"]], [["b"]]]), m)
    assert r.start[1] == pytest.approx(1.0 + 500.1)
    # per-pair link override in the other direction
    m2 = Machine(2, Link(4.0, 100.0), {(1, 0): Link(1.0, 0.0)})
    r2 = simulate(g, sched(g, [[["b"]], [["a"]]]), m2)
    assert r2.start[1] == pytest.approx(1.0 + 2000.0)


def test_stage_runs_members_together():
    g = G([("a", 1.0, 0.5), ("b", 2.0, 0.5), ("c", 1.0, 1)], [Edge("a", "c"), Edge("b", "c")])
    r = simulate(g, sched(g, [[["a", "b"], ["c"]]]), Machine(1))
    stage = 0.5 * 3.0 + 0.5 * max(1.5, 2.0)
    assert r.start[:2] == [0.0, 0.0] and r.end[:2] == [stage, stage]
    assert r.start[2] == stage and r.latency == stage + 1.0
    assert r.gpu_busy == [stage + 1.0]
    # a different stage model changes the stage time
    r1 = simulate(g, sched(g, [[["a", "b"], ["c"]]]), Machine(1), HIOSStageModel(1.0))
    assert r1.latency == 4.0


def test_stage_waits_for_gpu_and_inputs():
    # GPU1 stage 0 = x (long); stage 1 = y which needs a from GPU0: starts at max(x end, a end + t)
    g = G([("a", 1.0, 1), ("x", 5.0, 1), ("y", 1.0, 1)], [Edge("a", "y", time=1.0)])
    r = simulate(g, sched(g, [[["a"]], [["x"], ["y"]]]), Machine(2))
    assert r.start[2] == 5.0
    g2 = G([("a", 1.0, 1), ("x", 0.5, 1), ("y", 1.0, 1)], [Edge("a", "y", time=1.0)])
    r2 = simulate(g2, sched(g2, [[["a"]], [["x"], ["y"]]]), Machine(2))
    assert r2.start[2] == 2.0 and r2.stage_times[1] == [(0.0, 0.5), (2.0, 3.0)]


def test_byte_tensor_sent_once_per_destination_gpu():
    g = G([("p", 1.0, 1), ("c1", 1.0, 1), ("c2", 1.0, 1), ("c3", 1.0, 1)],
          [Edge("p", "c1", 10**6), Edge("p", "c2", 3 * 10**6), Edge("p", "c3", 10**6)])
    m = Machine(3, Link(1.0, 0.0))  # 1 MB = 1 ms
    r = simulate(g, sched(g, [[["p"]], [["c1"], ["c2"]], [["c3"]]]), m)
    assert len(r.transfers) == 2
    by_gpu = {t.dst_gpu: t for t in r.transfers}
    # one transfer to GPU 1, as large as the largest edge going there; one to GPU 2
    assert by_gpu[1].bytes == 3 * 10**6 and by_gpu[1].end - by_gpu[1].start == pytest.approx(3.0)
    assert by_gpu[2].bytes == 10**6 and r.start[3] == pytest.approx(2.0)
    assert r.start[1] == pytest.approx(4.0) and r.start[2] == pytest.approx(5.0)


def test_explicit_time_edges_are_sent_per_edge():
    g = G([("p", 1.0, 1), ("c1", 1.0, 1), ("c2", 1.0, 1)], [Edge("p", "c1", time=2.0), Edge("p", "c2", time=0.5)])
    r = simulate(g, sched(g, [[["p"]], [["c2"], ["c1"]]]), Machine(2))
    assert len(r.transfers) == 2
    assert r.start[2] == 1.5 and r.start[1] == 3.0


def test_serialized_links_queue_transfers():
    g = G([("a", 1.0, 0.5), ("b", 1.0, 0.5), ("c", 1.0, 1), ("d", 1.0, 1)],
          [Edge("a", "c", time=2.0), Edge("b", "d", time=2.0)])
    s = sched(g, [[["a", "b"]], [["c", "d"]]])
    free = simulate(g, s, Machine(2))
    ser = simulate(g, s, Machine(2), serialize_links=True)
    ab = 0.5 * 2 + 0.5 * 1.0
    assert free.start[2] == pytest.approx(ab + 2.0)
    assert ser.start[2] == pytest.approx(ab + 4.0)
    ts = sorted((t.start, t.end) for t in ser.transfers)
    assert ts[0][1] <= ts[1][0] + EPS
    # the two directions are separate links
    g2 = G([("a", 1.0, 1), ("b", 1.0, 1), ("c", 1.0, 1), ("d", 1.0, 1)],
           [Edge("a", "d", time=2.0), Edge("b", "c", time=2.0)])
    r = simulate(g2, sched(g2, [[["a"], ["c"]], [["b"], ["d"]]]), Machine(2), serialize_links=True)
    assert r.start[2] == r.start[3] == pytest.approx(3.0)


def test_empty_stages_and_gpus():
    g = G([("a", 1.0, 1)], [])
    r = Simulator(g, Machine(3)).run([[[], [0], []], [], [[]]])
    assert r.latency == 1.0 and r.gpu_busy == [1.0, 0.0, 0.0]
    s = Schedule.from_dict({"gpus": [[[], ["a"]]]})
    assert simulate(g, s, Machine(2)).latency == 1.0


def test_partial_schedule():
    g = G([("a", 1.0, 1), ("b", 2.0, 1), ("c", 3.0, 1)], [Edge("a", "c", time=1.0), Edge("b", "c", time=10.0)])
    sim = Simulator(g, Machine(2))
    r = sim.run([[[0]], [[2]]], complete=False)  # b unscheduled: its input is ignored
    assert r.start[2] == 2.0 and math.isnan(r.start[1]) and r.latency == 5.0
    assert set(r.named(g)) == {"a", "c"}
    with pytest.raises(ScheduleError, match="misses operator 'b'"):
        sim.run([[[0]], [[2]]])


def test_simulator_is_reusable():
    g = G([("a", 1.0, 1), ("b", 2.0, 1), ("c", 1.0, 1)], [Edge("a", "c", 10**6), Edge("b", "c", 10**6)])
    sim = Simulator(g, Machine(2, Link(1.0)), serialize_links=True)
    s1 = [[[0], [2]], [[1]]]
    s2 = [[[0, 1], [2]], []]
    first = sim.run(s1)
    sim.run(s2)
    again = sim.run(s1)
    assert (first.latency, first.start, first.end) == (again.latency, again.start, again.end)


# -- rejection -------------------------------------------------------------------

def one_line(ei):
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_rejects_missing_and_repeated():
    g = G([("a", 1.0, 1), ("b", 1.0, 1), ("c", 1.0, 1)], [])
    with pytest.raises(ScheduleError) as ei:
        simulate(g, sched(g, [[["a"], ["c"]]]), Machine(1))
    assert "'b'" in one_line(ei) and "misses" in one_line(ei)
    with pytest.raises(ScheduleError) as ei:
        simulate(g, sched(g, [[["a"]]]), Machine(1))
    assert "(and 1 more)" in one_line(ei)
    with pytest.raises(ScheduleError) as ei:
        simulate(g, sched(g, [[["a"], ["b"]], [["c", "a"]]]), Machine(2))
    assert "'a'" in one_line(ei) and "more than once" in one_line(ei)


def test_rejects_dependent_ops_in_one_stage():
    g = G([("a", 1.0, 1), ("b", 1.0, 1)], [Edge("a", "b")])
    with pytest.raises(ScheduleError) as ei:
        simulate(g, sched(g, [[["b", "a"]]]), Machine(1))
    assert "'b' depends on 'a'" in one_line(ei)


def test_rejects_deadlock_naming_operators():
    g = G([("a", 1, 1), ("b", 1, 1), ("c", 1, 1), ("d", 1, 1)], [Edge("a", "b"), Edge("c", "d")])
    with pytest.raises(ScheduleError) as ei:
        simulate(g, sched(g, [[["b"], ["c"]], [["d"], ["a"]]]), Machine(2))
    msg = one_line(ei)
    assert "deadlock" in msg and "'b' needs 'a'" in msg and "'d' needs 'c'" in msg
    # same GPU, wrong order
    g2 = G([("a", 1, 1), ("b", 1, 1)], [Edge("a", "b")])
    with pytest.raises(ScheduleError, match="'b' needs 'a'"):
        simulate(g2, sched(g2, [[["b"], ["a"]]]), Machine(1))
    # dependent through an operator elsewhere: u -> w -> v with u, v in one stage
    g3 = G([("u", 1, 1), ("w", 1, 1), ("v", 1, 1)], [Edge("u", "w"), Edge("w", "v")])
    with pytest.raises(ScheduleError, match="deadlock.*'v' needs 'w'"):
        simulate(g3, sched(g3, [[["u", "v"]], [["w"]]]), Machine(2))


def test_rejects_bad_gpu_and_names():
    g = G([("a", 1.0, 1), ("b", 1.0, 1)], [])
    with pytest.raises(ScheduleError, match="GPU 2 but the machine has 2"):
        simulate(g, sched(g, [[["a"]], [], [["b"]]]), Machine(2))
    with pytest.raises(ScheduleError, match="GPU 1 but the machine has 1"):
        Simulator(g, Machine(1)).run([[[0]], [[1]]])
    with pytest.raises(Exception, match="unknown operator 'zz'"):
        simulate(g, sched(g, [[["a"], ["zz"]]]), Machine(1))
    with pytest.raises(ScheduleError, match="not an operator index"):
        Simulator(g, Machine(1)).run([[[0], [-1]]])
    with pytest.raises(ScheduleError, match="not an operator index"):
        Simulator(g, Machine(1)).run([[[0], [2]]])


# -- properties over random DAGs and random valid schedules ------------------------

machines = st.builds(
    lambda bw, lat, skew: (bw, lat, skew),
    st.floats(0.5, 500.0), st.floats(0.0, 50.0), st.booleans())


def make_machine(gpus, params, rng):
    bw, lat, skew = params
    links = {}
    if skew and gpus > 1:
        for a in range(gpus):
            for b in range(gpus):
                if a != b and rng.random() < 0.5:
                    links[(a, b)] = Link(bw * rng.uniform(0.1, 2.0), lat * rng.uniform(0, 2))
    return Machine(gpus, Link(bw, lat), links)


def expected_arrivals(g, m, gpu_of, end):
    """(producer, consumer) -> (earliest arrival without link queues, transfer duration or None)."""
    out = {}
    for v in range(len(g)):
        for u, e in g.in_edges[v]:
            if gpu_of[u] == gpu_of[v]:
                out[(u, v)] = (end[u], None)
            elif e.time is not None:
                out[(u, v)] = (end[u] + e.time, e.time)
            else:
                dur = max(m.transfer_ms(e2, gpu_of[u], gpu_of[v]) for w, e2 in g.out_edges[u]
                          if e2.time is None and gpu_of[w] == gpu_of[v])
                out[(u, v)] = (end[u] + dur, dur)
    return out


@pytest.mark.parametrize("edge_kind", ["mixed", "bytes"])
@settings(max_examples=150, deadline=None)
@given(data=st.data(), mparams=machines, alpha=st.floats(0.0, 1.0), serialize=st.booleans(),
       rng=st.randoms(use_true_random=False))
def test_simulation_invariants(edge_kind, data, mparams, alpha, serialize, rng):
    g, gpus, s = data.draw(graph_and_schedule(max_nodes=16, max_gpus=4, edge_kind=edge_kind))
    m = make_machine(gpus, mparams, rng)
    model = HIOSStageModel(alpha)
    r = Simulator(g, m, model, serialize).simulate(s)
    idx = s.indexed(g)
    gpu_of = {}
    for gi, sts in enumerate(idx):
        for st_ in sts:
            for i in st_:
                gpu_of[i] = gi
    n = len(g)
    assert sorted(gpu_of) == list(range(n))
    # transfers, by (producer, consumer GPU) for byte edges, by (producer, consumer) for timed edges
    xfer = {}
    for t in r.transfers:
        u = g.index[t.src]
        assert t.src_gpu == gpu_of[u] != t.dst_gpu
        assert t.start >= r.end[u] - EPS
        v = g.index[t.dst]
        assert gpu_of[v] == t.dst_gpu
        (edge,) = [e for w, e in g.out_edges[u] if w == v]
        key = ("edge", u, v) if edge.time is not None else ("tensor", u, t.dst_gpu)
        assert key not in xfer, f"transfer {key} sent twice"
        xfer[key] = t
    want_keys = set()
    for e in g.edges:
        u, v = g.index[e.src], g.index[e.dst]
        if gpu_of[u] != gpu_of[v]:
            want_keys.add(("edge", u, v) if e.time is not None else ("tensor", u, gpu_of[v]))
    assert set(xfer) == want_keys
    arr = expected_arrivals(g, m, gpu_of, r.end)
    arrival = {}
    for (u, v), (earliest, dur) in arr.items():
        if dur is None:
            arrival[(u, v)] = earliest
            continue
        timed = any(e.time is not None for w, e in g.out_edges[u] if w == v)
        t = xfer[("edge", u, v)] if timed else xfer[("tensor", u, gpu_of[v])]
        assert t.end - t.start == pytest.approx(dur, rel=1e-9, abs=1e-12)
        if not serialize:
            assert t.start == r.end[u]
        arrival[(u, v)] = t.end
    # every operator starts after all its inputs arrive
    for (u, v), a in arrival.items():
        assert r.start[v] >= a - EPS
    # stages: one at a time per GPU, in order; duration = stage model; start = max(prev end, inputs)
    for gi, sts in enumerate(idx):
        prev_end = 0.0
        busy = 0.0
        for k, st_ in enumerate(sts):
            t0, t1 = r.stage_times[gi][k]
            assert t0 >= prev_end - EPS
            inputs = [arrival[(u, v)] for v in st_ for u in g.preds[v]]
            assert t0 == pytest.approx(max([prev_end] + inputs), abs=1e-9)
            dur = model([g.ops[i].cost for i in st_], [g.ops[i].utilization for i in st_])
            assert t1 - t0 == pytest.approx(dur, abs=1e-9)
            for i in st_:
                assert (r.start[i], r.end[i]) == (t0, t1)
            busy += t1 - t0
            prev_end = t1
        assert r.gpu_busy[gi] == pytest.approx(busy, abs=1e-9)
    assert r.latency == pytest.approx(max(r.end), abs=1e-12)
    # lower bounds
    lb = lower_bounds(g, gpus, model)
    assert r.latency >= lb.critical_path - 1e-9
    assert r.latency >= lb.work_per_gpu - 1e-9
    assert r.latency >= lb.value - 1e-9
    # serialized links never overlap on one directed link (a transfer of zero duration, e.g. a timed
    # edge of 0 ms, occupies no link time and is not booked)
    if serialize:
        by_link = {}
        for t in r.transfers:
            if t.end > t.start:
                by_link.setdefault((t.src_gpu, t.dst_gpu), []).append((t.start, t.end))
        for ivs in by_link.values():
            ivs.sort()
            for (a0, a1), (b0, b1) in zip(ivs, ivs[1:]):
                assert a1 <= b0 + EPS


@settings(max_examples=60, deadline=None)
@given(graph_and_schedule(max_nodes=12, max_gpus=3, edge_kind="bytes"), st.randoms(use_true_random=False))
def test_serialization_only_delays(gs, rng):
    g, gpus, s = gs
    m = Machine(gpus, Link(rng.uniform(0.5, 5.0), 1.0))
    free = simulate(g, s, m)
    ser = simulate(g, s, m, serialize_links=True)
    assert ser.latency >= free.latency - 1e-9
    assert len(ser.transfers) == len(free.transfers)


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=12), st.integers(1, 3), st.randoms(use_true_random=False))
def test_single_op_stages_on_one_gpu_equal_sum(g, gpus, rng):
    s = random_valid_schedule(g, gpus, rng, p_single=1.0, assignment={op.name: 0 for op in g.ops})
    r = simulate(g, s, Machine(gpus))
    assert r.latency == pytest.approx(g.total_work())
    assert r.transfers == []
    assert r.latency >= critical_path(g) - 1e-9


def _move_before(s, g, u_name, v_name):
    """Put consumer ``v`` as its own stage right before the stage of its producer ``u``."""
    stages = [[list(st_) for st_ in sts] for sts in s.stages]
    for sts in stages:
        for st_ in sts:
            if v_name in st_:
                st_.remove(v_name)
    for gi, sts in enumerate(stages):
        for k, st_ in enumerate(sts):
            if u_name in st_:
                sts.insert(k, [v_name])
                return Schedule([[tuple(x) for x in sts if x] for sts in stages])
    raise AssertionError


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=12, min_nodes=2), st.integers(1, 3), st.data())
def test_bad_schedules_rejected(g, gpus, data):
    s = data.draw(valid_schedules(g, gpus))
    m = Machine(gpus)
    simulate(g, s, m)  # valid
    names = s.operators()
    # miss one
    gone = data.draw(st.sampled_from(names))
    missing = Schedule([[tuple(x for x in st_ if x != gone) for st_ in sts] for sts in s.stages])
    with pytest.raises(ScheduleError, match=f"misses operator {gone!r}"):
        simulate(g, missing, m)
    # repeat one on a random GPU
    again = data.draw(st.sampled_from(names))
    rep = Schedule([list(sts) for sts in s.stages])
    rep.stages[data.draw(st.integers(0, gpus - 1))].append((again,))
    with pytest.raises(ScheduleError, match=f"{again!r} is scheduled more than once"):
        simulate(g, rep, m)
    # consumer before its producer on the producer's GPU: deadlock naming the consumer
    if g.edges:
        e = data.draw(st.sampled_from(g.edges))
        bad = _move_before(s, g, e.src, e.dst)
        with pytest.raises(ScheduleError) as ei:
            simulate(g, bad, m)
        msg = str(ei.value)
        assert "\n" not in msg and "deadlock" in msg and f"{e.dst!r} needs" in msg
        needed = {g.ops[u].name for u in g.preds[g.index[e.dst]]}
        assert any(f"needs {x!r}" in msg for x in needed)


@settings(max_examples=40, deadline=None)
@given(dags(max_nodes=12), st.integers(1, 3), st.randoms(use_true_random=False))
def test_random_valid_schedule_contract(g, gpus, rng):
    """The shared strategy really yields valid schedules: each op once, stages independent, order
    consistent with one global topological order."""
    s = random_valid_schedule(g, gpus, rng)
    assert sorted(s.operators()) == sorted(g.names) and s.gpus == gpus
    anc = g.ancestors_mask()
    for sts in s.indexed(g):
        for st_ in sts:
            assert 1 <= len(st_) <= 4
            for a in st_:
                for b in st_:
                    assert not anc[a] >> b & 1
    simulate(g, s, Machine(gpus))  # no deadlock


def test_lower_bounds_values():
    g = G([("a", 2.0, 0.5), ("b", 1.0, 1.0), ("c", 3.0, 0.2)], [Edge("a", "c")])
    lb = lower_bounds(g, 2)
    assert lb.critical_path == 5.0
    assert lb.work_per_gpu == pytest.approx((2 * 0.75 + 1 * 1.0 + 3 * 0.6) / 2)
    assert lb.sequential_work_per_gpu == 3.0
    assert lb.value == 5.0 and lb.to_dict()["value"] == 5.0
    assert lower_bounds(g, 1, HIOSStageModel(1.0)).work_per_gpu == 6.0  # alpha 1: no gain from streams
    with pytest.raises(Exception, match="GPU count"):
        lower_bounds(g, 0)
    # a stage can beat sum(cost) / N, never the stream-aware work bound
    g2 = G([("a", 1.0, 0.5), ("b", 1.0, 0.5)], [])
    r = simulate(g2, sched(g2, [[["a", "b"]]]), Machine(1))
    assert r.latency == 1.5 < lower_bounds(g2, 1).sequential_work_per_gpu
    assert r.latency >= lower_bounds(g2, 1).value


def test_stage_model_without_work_share_gives_no_work_bound():
    g = G([("a", 1.0, 0.5), ("b", 1.0, 0.5)], [])
    assert lower_bounds(g, 1, lambda costs, utils: max(costs)).work_per_gpu == 0.0


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2, 5) | st.sampled_from(["a", "b", "c", "zz"]),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                        st.sampled_from(["gpus", "version", "meta", "algorithm", "format"]), kids, max_size=3),
                    max_leaves=14))
def test_schedule_fuzz_only_schedule_errors(junk):
    """Any JSON thrown at Schedule.from_dict + simulate gives a result or a one-line GraphError."""
    from hios.graph import GraphError
    g = G([("a", 1.0, 1), ("b", 1.0, 1), ("c", 1.0, 1)], [Edge("a", "b")])
    for d in (junk, {"gpus": junk}):
        try:
            r = simulate(g, Schedule.from_dict(d), Machine(2))
            assert r.latency >= 2.0
        except GraphError as e:
            assert "\n" not in str(e)


@pytest.mark.parametrize("edge_kind", ["mixed", "bytes"])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), mparams=machines, alpha=st.floats(0.0, 1.0), serialize=st.booleans(),
       rng=st.randoms(use_true_random=False), keep=st.floats(0.0, 1.0))
def test_latency_only_equals_run(edge_kind, data, mparams, alpha, serialize, rng, keep):
    """Simulator.latency (the schedulers' fast path) gives run()'s latency bit for bit, on complete
    schedules and on partial ones (operators dropped at random)."""
    g, gpus, s = data.draw(graph_and_schedule(max_nodes=16, max_gpus=4, edge_kind=edge_kind))
    m = make_machine(gpus, mparams, rng)
    sim = Simulator(g, m, HIOSStageModel(alpha), serialize)
    idx = s.indexed(g)
    assert sim.latency(idx) == sim.run(idx).latency
    part = [[[i for i in st_ if rng.random() < keep] for st_ in sts] for sts in idx]
    assert sim.latency(part, complete=False) == sim.run(part, complete=False).latency


def test_latency_only_rejects_what_run_rejects():
    g = Graph([Operator("a", 1.0), Operator("b", 1.0)], [Edge("a", "b", time=0.5)])
    sim = Simulator(g, Machine(2))
    for bad in ([[[1], [0]], []], [[[0, 1]], []], [[[0]], []]):
        with pytest.raises(ScheduleError) as e1:
            sim.run(bad)
        with pytest.raises(ScheduleError) as e2:
            sim.latency(bad)
        assert str(e1.value) == str(e2.value)


def test_a_zero_length_transfer_needs_no_gap_on_a_serialized_link():
    """Found by the invariant test above: a 0-ms transfer sent while the link is busy is not queued
    behind the busy transfer (it moves nothing), and a busy link does not delay its consumer."""
    g = Graph([Operator("a", 0.5), Operator("c", 0.75), Operator("b", 0.1), Operator("d", 0.1)],
              [Edge("a", "b", bytes=10**9), Edge("c", "d", time=0.0)])
    s = Schedule([[["a"], ["c"]], [["b"], ["d"]]])
    r = Simulator(g, Machine(2, Link(1.0, 0.0)), serialize_links=True).simulate(s)
    xfer = {t.src: (t.start, t.end) for t in r.transfers}
    assert xfer["c"] == (1.25, 1.25) and xfer["a"][0] == 0.5 and xfer["a"][1] > 1.25

