"""Runtime: torch-free segmenting (any schedule -> safe program), device mapping, and the executor
on CPU logical devices (and on a GPU when there is one) against model(x)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from hios.errors import HiosError
from hios.generate import layered_dag
from hios.program.devices import logical_devices, parse_devices, used_gpus
from hios.program.segmenting import ProgramError, naive_streams, stream_program, verify
from hios.schedule import Schedule


def random_stages(graph, devices: int, width: int, rng: random.Random):
    """A valid staged schedule: operators of each device in topological order, grouped greedily
    into stages of up to ``width`` mutually independent operators."""
    anc = graph.ancestors_mask()
    assign = {i: rng.randrange(devices) for i in range(len(graph.ops))}
    stages = [[] for _ in range(devices)]
    for d in range(devices):
        cur: list[int] = []
        for i in (i for i in graph.topo if assign[i] == d):
            if cur and len(cur) < width and rng.random() < 0.7 and not any(anc[i] >> j & 1 for j in cur):
                cur.append(i)
            else:
                if cur:
                    stages[d].append(cur)
                cur = [i]
        if cur:
            stages[d].append(cur)
    return Schedule.from_indices(graph, stages)


# ----------------------------------------------------------------------------- segmenting
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), devices=st.integers(1, 3), width=st.integers(1, 3),
       shared=st.booleans(), sync=st.sampled_from(["data", "stage"]))
def test_program_covers_every_dependency(seed, devices, width, shared, sync):
    g = layered_dag(30, 60, 5, 0.5, seed)
    sched = random_stages(g, devices, width, random.Random(seed))
    mem = ["m"] * devices if shared else None
    prog = stream_program(g, sched, memory=mem, sync=sync)
    # every operator in exactly one segment, on the device the schedule gave it
    seen = [n for s in prog.segments for n in s.ops]
    assert sorted(seen) == sorted(g.names)
    assign = sched.assignment()
    for s in prog.segments:
        assert all(assign[n] == s.device for n in s.ops)
        assert all(prog.placement[n] == (s.device, s.stream) for n in s.ops)
    # a stage never puts two of its operators on one stream
    for d, sts in enumerate(sched.stages):
        for stage in sts:
            assert len({prog.placement[n] for n in stage}) == len(stage)
    if shared or devices == 1:
        assert not prog.transfers
    verify(g, prog)  # also run inside stream_program; here explicitly


def test_verify_catches_a_missing_wait():
    g = layered_dag(30, 60, 5, 0.5, 3)
    prog = stream_program(g, random_stages(g, 2, 3, random.Random(3)))
    victim = next(s for s in prog.segments if s.waits)
    from dataclasses import replace
    prog.steps[victim.id] = replace(victim, waits=())
    with pytest.raises(ProgramError):
        verify(g, prog)


def test_sequential_schedule_is_one_segment():
    g = layered_dag(40, 80, 6, 0.5, 1)
    prog = stream_program(g, Schedule.from_indices(g, [[[i] for i in g.topo]]))
    assert len(prog.segments) == 1 and prog.events == 0 and prog.streams == [1]
    assert prog.segments[0].ops == tuple(g.ops[i].name for i in g.topo)


def test_segments_break_only_at_cross_stream_edges():
    g = layered_dag(30, 60, 5, 0.5, 7)
    prog = stream_program(g, random_stages(g, 1, 3, random.Random(7)))
    place = prog.placement
    for s in prog.segments:
        ops = list(s.ops)
        for a, b in zip(ops, ops[1:]):
            # inside a segment no operator after the first waits for another stream ...
            assert all(place[e.src] == place[b] for e in g.edges if e.dst == b)
            # ... and no operator before the last feeds another stream
            assert all(place[e.dst] == place[a] for e in g.edges if e.src == a)


def test_naive_streams_put_branches_on_their_own_streams():
    g = layered_dag(40, 80, 6, 0.5, 2)
    sched = naive_streams(g, 4)
    smap = sched.meta["streams"]
    assert set(smap.values()) <= {0, 1, 2, 3} and len(set(smap.values())) > 1
    checked = 0
    for i in g.topo:  # right after its first predecessor, an operator continues that stream
        p = g.preds[i]
        if p and g.position[p[0]] == g.position[i] - 1:
            assert smap[g.ops[i].name] == smap[g.ops[p[0]].name]
            checked += 1
    assert checked
    prog = stream_program(g, sched, streams=smap)
    assert prog.streams == [max(smap.values()) + 1]


def test_bad_schedules_are_rejected():
    g = layered_dag(20, 40, 4, 0.5, 4)
    names = [g.ops[i].name for i in g.topo]
    with pytest.raises(ProgramError, match="misses operator"):
        stream_program(g, Schedule([[(n,) for n in names[:-1]]]))
    with pytest.raises(ProgramError, match="does not have"):
        stream_program(g, Schedule([[(n,) for n in names] + [("ghost",)]]))
    with pytest.raises(ProgramError, match="more than once"):
        stream_program(g, Schedule([[(n,) for n in names] + [(names[0],)]]))
    with pytest.raises(ProgramError, match="deadlocks"):
        stream_program(g, Schedule([[(n,) for n in reversed(names)]]))
    e = g.edges[0]
    with pytest.raises(ProgramError, match="share a stage"):
        rest = [(n,) for n in names if n not in (e.src, e.dst)]
        stream_program(g, Schedule([[(e.src, e.dst)] + rest]))


def test_transfers_once_per_value_and_memory():
    g = layered_dag(30, 60, 5, 0.5, 5)
    sched = random_stages(g, 3, 2, random.Random(5))
    prog = stream_program(g, sched)
    keys = [(t.op, prog.memory[t.dst]) for t in prog.transfers]
    assert len(keys) == len(set(keys))
    both = stream_program(g, sched, memory=["a", "a", "b"])
    assert all({prog.memory[t.src], prog.memory[t.dst]} != {"a"} for t in both.transfers)
    assert len(both.transfers) < len(prog.transfers)


def test_segmenting_needs_no_torch():
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "import hios.program, hios.program.segmenting, hios.program.devices\n"
            "from hios.generate import layered_dag\n"
            "from hios.schedule import Schedule\n"
            "g = layered_dag(20, 40, 4, 0.5, 1)\n"
            "p = hios.program.stream_program(g, Schedule.from_indices(g, [[[i] for i in g.topo]]))\n"
            "assert len(p.segments) == 1 and 'torch' not in [m for m in sys.modules if sys.modules[m]]\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ----------------------------------------------------------------------------- devices
def test_device_parsing_and_mapping():
    assert parse_devices("cuda:0,cuda:0") == ["cuda:0", "cuda:0"]
    assert parse_devices(["cpu", "CPU"]) == ["cpu", "cpu"]
    assert parse_devices("cuda") == ["cuda:0"]
    for bad in ("tpu:0", "cuda:x", "cpu,,cpu", "cpu,cuda:0"):
        with pytest.raises(HiosError):
            parse_devices(bad)
    assert used_gpus([[("a",)], [], []]) == 1
    assert logical_devices(None, 2, 2, 0) == ["cpu", "cpu"]
    assert logical_devices(None, 2, 2, 2) == ["cuda:0", "cuda:1"]
    with pytest.raises(HiosError, match="has only 2 GPU"):
        logical_devices(["cpu"] * 3, 2, 2, 0)
    with pytest.raises(HiosError, match="only 1 device"):
        logical_devices(["cpu"], 2, 2, 0)
    with pytest.raises(HiosError, match="does not exist"):
        logical_devices(["cuda:3"], 1, 1, 1)
    with pytest.raises(HiosError, match="needs 2 GPUs"):
        logical_devices(None, 2, 2, 1)


# ----------------------------------------------------------------------------- executor (torch)
torch = pytest.importorskip("torch")
nn = torch.nn


class Branchy(nn.Module):
    """A small Inception-like network: blocks of 3 parallel branches joined by a concat."""

    def __init__(self, c: int = 8, blocks: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            self.blocks.append(nn.ModuleList([
                nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU()),
                nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()),
                nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU()),
            ]))
            self.blocks.append(nn.Conv2d(3 * c, c, 1))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        for k in range(0, len(self.blocks), 2):
            x = self.blocks[k + 1](torch.cat([b(x) for b in self.blocks[k]], 1))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def branchy():
    from hios.frontend.capture import capture
    torch.manual_seed(0)
    model = Branchy().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 16, 16)
    cap = capture(model, (x,), "branchy")
    with torch.no_grad():
        ref = model(x)
    return model, x, cap, ref


def _close(out, ref):
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


@pytest.mark.parametrize("devices,width,sync", [("cpu,cpu", 2, "data"), ("cpu,cpu,cpu", 3, "data"),
                                                ("cpu,cpu,cpu", 3, "stage"), ("cpu,cpu", 3, "stage")])
def test_cpu_logical_devices_equal_the_model(branchy, devices, width, sync):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, ref = branchy
    n = len(devices.split(","))
    for seed in range(3):
        sched = random_stages(cap.graph, n, width, random.Random(seed))
        assert any(len(s) > 1 for sts in sched.stages for s in sts)
        m = hcompile(model, (x,), sched, devices, captured=cap, sync=sync)
        assert m.mode == "stream" and m.kernels == "eager"
        assert max(m.program.streams) > 1
        for _ in range(2):  # the module can be called again
            x2 = torch.randn_like(x)
            with torch.no_grad():
                _close(m(x2), model(x2))


def test_cpu_sequential_and_naive(branchy):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, ref = branchy
    m = hcompile(model, (x,), None, "cpu", captured=cap)
    assert len(m.program.segments) == 1
    _close(m(x), ref)
    nv = naive_streams(cap.graph, 4)
    m = hcompile(model, (x,), nv, "cpu", captured=cap, streams=nv.meta["streams"])
    _close(m(x), ref)


def test_placement_does_not_touch_the_captured_model(branchy):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, ref = branchy
    before = {k: (v.data_ptr(), v.device) for k, v in cap.gm.state_dict().items()}
    hcompile(model, (x,), None, "cpu", captured=cap, channels_last=True)
    assert {k: (v.data_ptr(), v.device) for k, v in cap.gm.state_dict().items()} == before


def test_bad_input_is_a_hios_error(branchy):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, ref = branchy
    g = cap.graph
    names = [g.ops[i].name for i in g.topo]
    with pytest.raises(HiosError, match="misses operator"):
        hcompile(model, (x,), Schedule([[(n,) for n in names[1:]]]), "cpu", captured=cap)
    with pytest.raises(HiosError, match="does not have"):
        hcompile(model, (x,), Schedule([[(n,) for n in names] + [("extra_op",)]]), "cpu", captured=cap)
    two = random_stages(g, 2, 2, random.Random(0))
    with pytest.raises(HiosError, match="has only 2 GPU"):
        hcompile(model, (x,), two, "cpu,cpu,cpu", captured=cap)
    with pytest.raises(HiosError, match="does not exist"):
        hcompile(model, (x,), two, "cuda:0,cuda:7" if torch.cuda.is_available() else "cuda:0,cuda:1",
                 captured=cap)
    with pytest.raises(HiosError, match="CUDA-graph mode"):
        hcompile(model, (x,), None, "cpu", captured=cap, mode="graph")
    m = hcompile(model, (x,), None, "cpu", captured=cap)
    with pytest.raises(HiosError, match="compiled for"):
        m(torch.randn(1, 3, 20, 20))


def test_plan_graph_mismatch_is_named(branchy):
    from hios.graph import Graph
    from hios.runtime.local.executor import check_plan_graph, check_plan_inputs
    _, x, cap, _ = branchy
    g = cap.graph
    check_plan_graph(g, g)
    fewer = Graph(g.ops[:-1], [e for e in g.edges if e.dst != g.ops[-1].name], g.name)
    with pytest.raises(HiosError, match="misses the model's operator"):
        check_plan_graph(fewer, g)
    with pytest.raises(HiosError, match="input shape"):
        check_plan_inputs({}, Graph(g.ops, g.edges, g.name, {"inputs": [{"shape": [1, 3, 32, 32]}]}), (x,))
    with pytest.raises(HiosError, match="batch 1 at 299x299"):
        check_plan_inputs({"image_size": 299, "batch": 1}, None, (x,))


def test_hios_compile_is_lazy_and_works(branchy):
    import hios
    model, x, cap, ref = branchy
    m = hios.compile(model, (x,), None, "cpu")
    _close(m(x), ref)


# ----------------------------------------------------------------------------- GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("mode", ["graph", "stream"])
def test_gpu_logical_devices_equal_the_model(branchy, mode):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, _ = branchy
    model = model.cuda()
    for seed in range(2):
        sched = random_stages(cap.graph, 2, 3, random.Random(seed))
        m = hcompile(model, (x.cuda(),), sched, "cuda:0,cuda:0", kernels="eager", mode=mode, captured=cap)
        assert m.mode == mode and m.fallback_reason is None
        for _ in range(2):
            x2 = torch.randn_like(x).cuda()
            with torch.no_grad():
                _close(m(x2), model(x2))


@cuda
def test_gpu_inductor_graph_mode(branchy):
    from hios.runtime.local.executor import compile as hcompile
    model, x, cap, _ = branchy
    model = model.cuda()
    sched = random_stages(cap.graph, 1, 3, random.Random(1))
    m = hcompile(model, (x.cuda(),), sched, "cuda:0", captured=cap)
    assert m.kernels == "inductor" and m.mode == "graph" and m.channels_last
    x2 = torch.randn_like(x).cuda()
    with torch.no_grad():
        _close(m(x2), model(x2))


# ----------------------------------------------------------------------------- the run record
def test_run_record_json_has_what_each_run_says():
    """RunRecord.to_dict: check and baselines only when they ran (a distributed run says
    ``baselines: null``), levers for a local run, backend and ranks for a distributed one."""
    from hios.runtime.measure.record import Distributed, RunRecord, format_report
    head = dict(model="m", image_size=16, batch=1, devices=["cpu"], device_name="cpu", algorithm="hios-lp",
                kernels="eager", mode="stream", fallback_reason=None, tf32=False,
                program={"devices": 1, "streams": [1], "segments": 1, "transfers": 0, "batches": 0})
    local = RunRecord(**head, levers="none", plan_call={"median_ms": 1.0})
    d = local.to_dict()
    assert "check" not in d and "baselines" not in d and "backend" not in d and d["levers"] == "none"
    assert not local.failed and "simulator prediction" in format_report(local)
    chk = {"ok": False, "max_abs_diff": 1.0, "output_scale": 1.0, "relative": 1.0, "tolerance": 1e-4}
    dist = RunRecord(**head, check=chk, distributed=Distributed("gloo", 2, [{"rank": 0}]))
    d = dist.to_dict()
    assert dist.failed and d["backend"] == "distributed" and d["baselines"] is None and d["max_abs_diff"] == 1.0
    assert d["ranks"] == [{"rank": 0}] and "levers" not in d and "FAILED" in format_report(dist)
