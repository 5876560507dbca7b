"""Levers that shorten the critical path (issue 13): merged segments (torch-free), fused
convolution epilogues and critical-path stream priorities, each checked against the plan / model(x)."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.program.segmenting import stream_program
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


# ----------------------------------------------------------------------------- critical path (torch-free)
def test_critical_operators_and_stream_priorities():
    from hios.program.priority import critical_operators, stream_priorities
    ops = [Operator("s", 1.0), Operator("long", 5.0), Operator("short", 1.0), Operator("t", 1.0)]
    edges = [Edge("s", "long", 0), Edge("s", "short", 0), Edge("long", "t", 0), Edge("short", "t", 0)]
    g = Graph(ops, edges, "diamond")
    assert critical_operators(g) == {"s", "long", "t"}
    assert critical_operators(g, tolerance=0.6) == {"s", "long", "short", "t"}  # slack 4 of 7
    prog = stream_program(g, Schedule([[("s",), ("long", "short"), ("t",)]]))
    prio = stream_priorities(prog, critical_operators(g))
    hot = prog.placement["long"]
    assert prio[hot] == -1 and sum(v == -1 for v in prio.values()) == 1
    assert prio[prog.placement["short"]] == 0


# ----------------------------------------------------------------------------- executor levers (torch, CPU)
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
nn = torch.nn


class Blocks(nn.Module):
    """Inception-like blocks whose concatenation feeds several branches, plus a residual conv + add + ReLU."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.b = nn.ModuleList([nn.ModuleList([nn.Conv2d(c if k == 0 else 3 * c, c, 1) for _ in range(3)])
                                for k in range(2)])
        self.deep = nn.Conv2d(c, c, 3, padding=1)
        self.res = nn.Conv2d(3 * c, 3 * c, 3, padding=1)
        self.same = nn.Conv2d(3 * c, 3 * c, 3, padding="same")
        self.head = nn.Linear(3 * c, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for k, branches in enumerate(self.b):
            ys = [torch.relu(m(x)) for m in branches]
            ys[0] = torch.relu(torch.nn.functional.conv2d(ys[0], self.deep.weight, self.deep.bias, padding=1))
            x = torch.cat(ys, 1)
        x = torch.relu(self.res(x) + x)
        x = torch.relu(self.same(x))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def blocks():
    from hios.frontend.capture import capture
    torch.manual_seed(0)
    model = Blocks().eval()
    x = torch.randn(1, 3, 12, 12)
    cap = capture(model, (x,), "blocks")
    with torch.no_grad():
        ref = model(x)
    return model, x, cap, ref


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_fused_epilogues_equal_the_model_on_the_reference_kernel(blocks):
    import warnings
    from hios.runtime.local.fuse_epilogue import fuse_conv_epilogues
    from hios.frontend.segments import assemble_output, build_segment
    model, x, cap, ref = blocks
    env = dict(zip(cap.input_names, (x,)))
    fused = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # CPU: no warning, nothing rewritten unless forced
        for i in cap.graph.topo:
            seg = build_segment(cap, [cap.graph.ops[i].name])
            assert fuse_conv_epilogues(seg.module, "cpu") == 0
            fused += fuse_conv_epilogues(seg.module, "cpu", force=True)
            env.update(zip(seg.outputs, seg.module(*[env[n] for n in seg.inputs])))
    # stem, 6 branch convs, 2 functional convs; the residual add is another operator; not padding="same"
    assert fused == 9
    _close(assemble_output(cap, env), ref)
    whole = build_segment(cap, [cap.graph.ops[i].name for i in cap.graph.topo])  # one segment: + residual
    assert fuse_conv_epilogues(whole.module, "cpu", force=True) == 10
    with torch.no_grad():
        out = whole.module(x)
    _close(out[whole.outputs.index(next(n for n in whole.outputs))], ref)


def test_fused_epilogues_fall_back_per_operator_with_a_warning(blocks):
    from hios.runtime.local.fuse_epilogue import fuse_conv_epilogues, unsupported_reason
    from hios.frontend.segments import build_segment
    _, _, cap, _ = blocks
    seg = build_segment(cap, [cap.graph.ops[0].name])
    if not torch.backends.cudnn.is_available():
        with pytest.warns(UserWarning, match=r"not fused .*stem.*cuDNN is not available"):
            assert fuse_conv_epilogues(seg.module, "cuda") == 0
    assert "float64" in (unsupported_reason("cuda", torch.float64, (1, 1)) or "float64")
    assert "padding" in (unsupported_reason("cuda", torch.float32, "same") or "padding")


def _module(cap, sched, levers, streams=None, merge=False):
    from hios.runtime.local.executor import HiosModule
    prog = stream_program(cap.graph, sched, memory=["cpu"], streams=streams, merge=merge)
    return HiosModule(cap, prog, ["cpu"], "eager", "stream", False, True, 1, False, levers=levers)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_lever_equals_the_model_on_cpu(blocks, seed):
    from hios.program.levers import Levers
    from hios.program.priority import critical_operators
    from hios.program.segmenting import naive_streams
    model, x, cap, ref = blocks
    g = cap.graph
    costed = Graph([Operator(op.name, 1.0 + (k % 3), op.kind) for k, op in enumerate(g.ops)], g.edges, g.name)
    sched = random_stages(g, 1, 3, random.Random(seed))
    nv = naive_streams(g, 3)
    for levers in (Levers(concat_inplace=True), Levers(fuse_epilogues=True, merge_segments=True, cudnn_benchmark=True),
                   Levers(True, True, True, "critical", critical_operators(costed))):
        for s, smap in ((sched, None), (nv, nv.meta["streams"])):
            m = _module(cap, s, levers, smap, merge=levers.merge_segments)
            if levers.concat_inplace and smap is not None:
                assert len(m._cats) == 2 and 1 <= sum(seg.skip for seg in m._segs if seg) <= 2
            for _ in range(2):
                x2 = torch.randn_like(x)
                with torch.no_grad():
                    _close(m(x2), model(x2))


def test_cudnn_benchmark_is_on_inside_the_scope_only():
    from hios.runtime.local.executor import cudnn_benchmark
    for before in (False, True):
        torch.backends.cudnn.benchmark = before
        with cudnn_benchmark():
            assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.benchmark is before
        with pytest.raises(RuntimeError), cudnn_benchmark():
            raise RuntimeError("a failed capture")
        assert torch.backends.cudnn.benchmark is before
    torch.backends.cudnn.benchmark = False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_levers_in_one_cuda_graph(blocks):
    from hios.runtime.local.executor import HiosModule
    from hios.program.levers import Levers
    from hios.program.segmenting import naive_streams
    model, x, cap, ref = blocks
    nv = naive_streams(cap.graph, 3)
    prog = stream_program(cap.graph, nv, memory=["cuda:0"], streams=nv.meta["streams"], merge=True)
    before = torch.backends.cudnn.benchmark
    m = HiosModule(cap, prog, ["cuda:0"], "inductor", "graph", True, True, 2, False,
                   levers=Levers(True, True, True, "stream0", cudnn_benchmark=True))
    assert m.mode == "graph" and m._cats
    assert torch.backends.cudnn.benchmark == before
    with torch.no_grad():
        for _ in range(2):
            x2 = torch.randn_like(x)
            out = m(x2.cuda()).cpu()
            ref2 = model(x2)
            assert (out - ref2).abs().max().item() <= 2e-3 * ref2.abs().max().item()  # TF32 convolutions


class Nested(nn.Module):
    """InceptionE-like: a concatenation that is itself a branch of another concatenation."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.a, self.b, self.c, self.d = (nn.Conv2d(c, c, 1) for _ in range(4))
        self.e = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Conv2d(4 * c, 2, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        inner = torch.cat([torch.relu(self.b(x)), torch.relu(self.c(x))], 1)
        y = torch.cat([torch.relu(self.a(x)), inner, torch.relu(self.e(torch.relu(self.d(x))))], 1)
        return self.head(y) + self.head(y * 2)


def test_nested_concatenations_in_place():
    from hios.frontend.capture import capture
    from hios.program.levers import Levers
    from hios.program.segmenting import naive_streams
    torch.manual_seed(0)
    model = Nested().eval()
    x = torch.randn(1, 3, 8, 8)
    cap = capture(model, (x,), "nested")
    nv = naive_streams(cap.graph, 4)
    m = _module(cap, nv, Levers(concat_inplace=True), nv.meta["streams"])
    assert len(m._cats) == 2
    with torch.no_grad():
        for _ in range(2):
            x2 = torch.randn_like(x)
            _close(m(x2), model(x2))
