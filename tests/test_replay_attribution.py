"""Kernels of a replayed CUDA graph attributed to the plan's segments (hios.runtime.measure.replay_attribution),
on synthetic kernel lists: torch-free, so CI without a GPU checks the logic the GPU trace relies on."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import graph_and_schedule

from hios.runtime.measure.replay_attribution import (OUTSIDE, Lane, ReplayKernel, attribute_replay, coverage, lanes_of,
                                             segment_dependencies, union_length)
from hios.program.segmenting import ExecProgram, SegmentStep, stream_program


def _seg(i, stream, waits=(), record=None, device=0):
    return SegmentStep(i, device, stream, (f"op{i}",), tuple(waits), record, (), (), 0)


def _program():
    """seg0 (stream 0) records e0; seg1 (stream 1) waits for it and records e1; seg2 follows seg0 on
    stream 0; seg3 (stream 0) waits for e1."""
    steps = [_seg(0, 0, record=0), _seg(1, 1, waits=(0,), record=1), _seg(2, 0), _seg(3, 0, waits=(1,))]
    return ExecProgram(1, [2], steps, 2, ["cuda:0"])


#: seg0 and seg1 launch the same two kernels: only order and dependencies tell them apart.
SEQS = {0: ("conv", "relu"), 1: ("conv", "relu"), 2: ("gemm",), 3: ("cat", "pool")}


def _replay(stream_of=lambda lane: 7):
    """One replay of _program: (kernels, their true owners).  Times in ms."""
    rows = [("copy", 0.000, 0.010, None, OUTSIDE),
            ("conv", 0.010, 0.050, 0, 0), ("relu", 0.050, 0.060, 0, 0),
            ("conv", 0.061, 0.100, 1, 1),            # seg1 waits for seg0
            ("gemm", 0.062, 0.090, 0, 2),            # seg2 runs beside seg1 on stream 0
            ("relu", 0.100, 0.110, 1, 1),
            ("cat", 0.112, 0.120, 0, 3), ("pool", 0.125, 0.130, 0, 3)]  # a 5 µs gap inside seg3
    ks = [ReplayKernel(n, a, b, stream_of(lane)) for n, a, b, lane, _ in rows]
    return ks, [o for *_, o in rows]


def test_dependencies_follow_events():
    assert segment_dependencies(_program()) == {0: frozenset(), 1: frozenset({0}), 2: frozenset(),
                                                3: frozenset({1})}


@pytest.mark.parametrize("streams", ["one launch stream", "a stream per lane"])
def test_every_kernel_goes_to_its_segment(streams):
    prog = _program()
    ks, truth = _replay((lambda lane: 7) if streams == "one launch stream" else (lambda lane: 20 + (lane or 0)))
    res = attribute_replay(lanes_of(prog, SEQS, ("copy",)), ks, segment_dependencies(prog))
    assert res.owner == truth
    assert (res.missing, res.relaxed) == (0, 0)
    sp = res.spans
    assert (sp[0].start, sp[0].end, sp[0].busy) == (0.010, 0.060, pytest.approx(0.050))
    assert (sp[1].start, sp[1].end) == (0.061, 0.110) and sp[1].busy == pytest.approx(0.049)
    assert (sp[3].start, sp[3].end, sp[3].busy) == (0.112, 0.130, pytest.approx(0.013))
    assert res.total == pytest.approx(0.150)
    assert res.outside == pytest.approx(0.010) and res.segments == pytest.approx(0.140)
    assert res.unattributed == pytest.approx(0.0)
    # stream 0: spans 0.050 + 0.028 + 0.018; busy 0.050 + 0.028 + 0.013 (the gap inside seg3 is idle)
    lane0 = res.lanes[(0, 0)]
    assert lane0.segments == pytest.approx(0.096) and lane0.busy == pytest.approx(0.091)


def test_a_kernel_the_stream_pass_did_not_show_is_unattributed_and_counted():
    prog = _program()
    ks, truth = _replay()
    ks.insert(3, ReplayKernel("memset", 0.0605, 0.0608, 7))  # not launched by any segment
    res = attribute_replay(lanes_of(prog, SEQS, ("copy",)), ks, segment_dependencies(prog))
    assert res.owner[3] is None and [o for k, o in enumerate(res.owner) if k != 3] == truth
    assert res.unattributed == pytest.approx(0.0003)
    cov = coverage([res])
    assert cov.unmatched_kernels == 1
    assert cov.attributed == pytest.approx(0.140 / 0.1503)


def test_a_kernel_missing_from_the_replay_is_skipped_not_derailing():
    prog = _program()
    ks, truth = _replay()
    del ks[5], truth[5]  # seg1's relu is not in the replay
    res = attribute_replay(lanes_of(prog, SEQS, ("copy",)), ks, segment_dependencies(prog))
    assert res.owner == truth
    assert res.missing == 1 and res.spans[1].missing == 1 and res.spans[1].kernels == 1


def test_without_dependencies_a_kernel_waits_for_its_lane_only():
    """A lane is one serial chain: a kernel overlapping its lane's previous kernel is not its."""
    lanes = [Lane((0, 0), ((0, ("a", "a")),))]
    ks = [ReplayKernel("a", 0.0, 1.0), ReplayKernel("a", 0.5, 1.5)]
    res = attribute_replay(lanes, ks)
    assert res.owner == [0, None] and res.missing == 1


def test_coverage_over_replays_and_its_line():
    prog = _program()
    runs = [attribute_replay(lanes_of(prog, SEQS, ("copy",)), _replay()[0], segment_dependencies(prog))
            for _ in range(3)]
    cov = coverage(runs)
    assert cov.replays == 3 and cov.kernels == 24 and cov.missing == 0
    assert cov.attributed == pytest.approx(0.140 / 0.150)
    assert cov.lane_ratio((0, 0)) == pytest.approx(0.096 / 0.091)
    assert cov.lane_ratio((0, 1)) == pytest.approx(1.0)
    assert cov.worst_lane_deviation() == pytest.approx(0.096 / 0.091 - 1)
    d = cov.to_dict()
    assert d["attributed_share"] == pytest.approx(0.14 / 0.15) and d["outside_share"] == pytest.approx(0.01 / 0.15)
    assert [(s["device"], s["stream"]) for s in d["streams"]] == [(0, 0), (0, 1)]
    line = cov.line()
    assert "24 kernels in 3 replay(s): 93.3 % of kernel time attributed to segments" in line
    assert "d0s0 0.0960/0.0910 ms" in line


def test_union_length():
    assert union_length([]) == 0.0
    assert union_length([(0, 2), (1, 3), (5, 6)]) == 4.0
    assert union_length([(1, 2), (0, 10)]) == 10.0


# -- property: replays simulated from random plans --------------------------------------------------

def _simulate(program, seqs, rng, one_stream):
    """A replay of ``program``: every lane a serial chain; a segment starts after its lane's
    previous kernel and the segments it waits for; random durations and gaps."""
    deps = segment_dependencies(program)
    end, lane_end, ks, truth = {}, {}, [], []
    for st in program.segments:  # issue order is a topological order
        lane = (st.device, st.stream)
        t = max([lane_end.get(lane, 0.0)] + [end[d] for d in deps[st.id]]) + rng.uniform(0.0, 0.003)
        for sig in seqs[st.id]:
            d = rng.uniform(0.001, 0.05)
            ks.append(ReplayKernel(sig, t, t + d, 7 if one_stream else 10 + 8 * st.device + st.stream))
            truth.append(st.id)
            t += d + rng.uniform(0.0, 0.002)
        end[st.id] = lane_end[lane] = t
    order = list(range(len(ks)))
    rng.shuffle(order)  # the input's order does not matter
    return [ks[i] for i in order], [truth[i] for i in order]


@settings(max_examples=60, deadline=None)
@given(graph_and_schedule(max_nodes=12, max_gpus=2), st.integers(0, 2**31), st.booleans())
def test_unique_kernels_are_attributed_exactly(gs, seed, one_stream):
    graph, gpus, sched = gs
    prog = stream_program(graph, sched.padded(gpus), memory=["cuda:0"] * gpus)
    rng = random.Random(seed)
    seqs = {st.id: tuple(f"k{st.id}.{j}" for j in range(rng.randint(0, 4))) for st in prog.segments}
    ks, truth = _simulate(prog, seqs, rng, one_stream)
    res = attribute_replay(lanes_of(prog, seqs), ks, segment_dependencies(prog))
    assert res.owner == truth and res.missing == 0
    for sid, sp in res.spans.items():
        mine = [k for k, o in zip(ks, truth) if o == sid]
        assert (sp.start, sp.end) == (min(k.start for k in mine), max(k.end for k in mine))
    cov = coverage([res])
    assert cov.attributed == pytest.approx(1.0) if ks else cov.kernels == 0


@settings(max_examples=60, deadline=None)
@given(graph_and_schedule(max_nodes=12, max_gpus=2), st.integers(0, 2**31))
def test_identical_kernels_on_parallel_streams_stay_consistent(gs, seed):
    """Two-letter kernel names on every stream: which of two identical concurrent kernels is whose
    can be undecidable, but every attribution keeps each lane a serial chain in segment order,
    and nearly all kernel time is attributed."""
    graph, gpus, sched = gs
    prog = stream_program(graph, sched.padded(gpus), memory=["cuda:0"] * gpus)
    rng = random.Random(seed)
    seqs = {st.id: tuple(rng.choice("ab") for _ in range(rng.randint(0, 4))) for st in prog.segments}
    ks, truth = _simulate(prog, seqs, rng, True)
    res = attribute_replay(lanes_of(prog, seqs), ks, segment_dependencies(prog))
    lane_of = {st.id: (st.device, st.stream) for st in prog.segments}
    order = {st.id: n for n, st in enumerate(prog.segments)}
    for lane in set(lane_of.values()):
        mine = sorted((k.start, k.end, order[o], k.sig) for k, o in zip(ks, res.owner) if lane_of.get(o) == lane)
        assert all(a[1] <= b[0] + 1e-3 and a[2] <= b[2] for a, b in zip(mine, mine[1:]))
    for sid, sp in res.spans.items():  # each segment's kernels are a prefix-free match of its sequence
        assert sp.kernels + sp.missing == len(seqs[sid])
    assert res.unattributed <= 0.25 * res.total + 1e-12
