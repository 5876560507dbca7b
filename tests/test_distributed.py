"""Tests of the distributed runtime (hios.runtime.distributed and its dist_* helpers).

Torch-free: the rank programs (every crossing value sent once, in an order that cannot deadlock
under in-order GPU queues nor under blocking host waits), the watchdog, the start-up checks.
With torch (CPU, gloo): real ``torchrun`` launches of 2 and 3 ranks on googlenet and a random-DAG
network whose outputs must equal ``model(x)``, a refused world size, and a rank that exits
early or hangs while the others stop with a message naming it.  Every subprocess has a hard
timeout, so a bug cannot hang the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings

from hios import Machine, layered_dag, schedule
from hios.errors import HiosError
from hios.runtime.distributed.program import INPUT, build_rank_programs
from hios.runtime.distributed.watchdog import Watchdog
from hios.program.segmenting import stream_program
from strategies import graph_and_schedule

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- rank programs
def _flow(graph, prog, input_ops=1):
    """Synthetic values: every operator produces one value named after it; the first operators in
    topological order also read the model input 'x'; the sinks are the model outputs."""
    readers_of_x = {graph.ops[i].name for i in graph.topo[:input_ops]}
    reads = {}
    for s in prog.segments:
        inside = set(s.ops)
        vals = []
        for o in s.ops:
            if o in readers_of_x:
                vals.append("x")
            vals += [graph.ops[u].name for u in graph.preds[graph.index[o]] if graph.ops[u].name not in inside]
        reads[s.id] = list(dict.fromkeys(vals))
    values_of = {op.name: [op.name] for op in graph.ops}
    outputs = [graph.ops[i].name for i in graph.sinks()]
    return reads, values_of, ["x"], outputs


def _check_program(graph, sched, world):
    prog = stream_program(graph, sched)
    reads, values_of, inputs, outputs = _flow(graph, prog)
    dp = build_rank_programs(prog, reads, values_of, inputs, outputs, world)
    segs = {s.id: s for s in prog.segments}
    owner = {v: segs[prog.segment_of[op]].device for op, vals in values_of.items() for v in vals}
    owner["x"] = 0
    # 1. Every value read on another rank than its producer's is sent exactly once to that rank.
    needed = {(v, s.device) for s in prog.segments for v in reads[s.id] if owner[v] != s.device}
    needed |= {(v, 0) for v in outputs if owner[v] != 0}
    sent = [(t.value, t.dst) for t in dp.transfers]
    assert sorted(sent) == sorted(needed)
    assert all(t.src == owner[t.value] for t in dp.transfers)
    assert len({t.tag for t in dp.transfers}) == len(dp.transfers)
    # 2. Each segment waits for the batches holding the foreign values it reads; rank 0 for the outputs.
    batch_of = {(t.value, t.dst): b.index for b in dp.batches for t in b.transfers}
    for p in dp.ranks:
        for a in p.actions:
            if a.kind == "segment":
                want = {batch_of[(v, p.rank)] for v in reads[a.step] if owner[v] != p.rank}
                assert set(a.recv_waits) == want
    assert set(dp.ranks[0].output_waits) == {batch_of[(v, 0)] for v in outputs if owner[v] != 0}
    # 3. Between any two ranks, both sides post their common transfers in the same order.
    for a in range(world):
        for b in range(world):
            if a != b:
                out = [t.tag for t in dp.ranks[a].sends if t.dst == b]
                inc = [t.tag for t in dp.ranks[b].recvs if t.src == a]
                assert out == inc
    _no_deadlock_blocking_host(dp, segs)
    _no_deadlock_in_order_queues(dp, segs, prog)
    return dp


def _no_deadlock_blocking_host(dp, segs):
    """gloo-like: each rank runs its actions in order on the host; posting never blocks, a segment
    blocks until the batches it reads were posted by their senders."""
    pos = [0] * dp.world
    posted = set()  # batch indices the sender has posted
    done = 0
    total = sum(len(p.actions) for p in dp.ranks)
    while done < total:
        moved = False
        for p in dp.ranks:
            while pos[p.rank] < len(p.actions):
                a = p.actions[pos[p.rank]]
                if a.kind == "segment" and not all(b in posted for b in a.recv_waits):
                    break
                if a.kind == "send":
                    posted.add(a.batch.index)
                pos[p.rank] += 1
                done += 1
                moved = True
        assert moved, f"blocking-host deadlock at positions {pos}"
    assert all(b in posted for b in dp.ranks[0].output_waits)


def _no_deadlock_in_order_queues(dp, segs, prog):
    """NCCL-like (stricter than NCCL): every rank posts everything at once; its communication runs
    one batch at a time in posting order, and a batch completes only when it heads the queue of its
    sender and of every receiver and its producer segment is done.  Segments run on their streams
    in order once their local events and received batches are done."""
    queues = {p.rank: [a.batch.index for a in p.actions if a.kind in ("send", "recv")] for p in dp.ranks}
    head = {r: 0 for r in queues}
    complete = set()
    seg_done = set()
    rec_by = {s.record: s.id for s in prog.segments if s.record is not None}
    streams = {}
    for p in dp.ranks:
        for a in p.actions:
            if a.kind == "segment":
                streams.setdefault((p.rank, segs[a.step].stream), []).append(a)
    spos = {k: 0 for k in streams}
    pending = sum(len(v) for v in streams.values()) + len(dp.batches)
    while pending:
        moved = False
        for k, acts in streams.items():
            while spos[k] < len(acts):
                a = acts[spos[k]]
                if not all(b in complete for b in a.recv_waits):
                    break
                if not all(rec_by[e] in seg_done for e in a.local_waits):
                    break
                seg_done.add(a.step)
                spos[k] += 1
                pending -= 1
                moved = True
        for b in dp.batches:
            if b.index in complete:
                continue
            ranks = {b.src} | {t.dst for t in b.transfers}
            heads_ok = all(head[r] < len(queues[r]) and queues[r][head[r]] == b.index for r in ranks)
            if heads_ok and (b.producer == INPUT or b.producer in seg_done):
                complete.add(b.index)
                for r in ranks:
                    head[r] += 1
                pending -= 1
                moved = True
        assert moved, f"in-order-queue deadlock: heads {head}, complete {sorted(complete)}"


@settings(max_examples=60, deadline=None)
@given(graph_and_schedule(max_nodes=12, max_gpus=3))
def test_rank_programs_random_schedules(gs):
    graph, gpus, sched = gs
    _check_program(graph, sched, sched.gpus)


@pytest.mark.parametrize("algo,gpus", [("hios-lp", 2), ("hios-mr", 3), ("heft", 3), ("sequential", 2)])
def test_rank_programs_scheduler_output(algo, gpus):
    g = layered_dag(40, 80, 5, 0.5, 7)
    sched = schedule(g, Machine(gpus), algo)
    dp = _check_program(g, sched, sched.gpus)
    if algo == "sequential":  # everything on rank 0: nothing crosses
        assert dp.transfers == []


def test_deadlock_checkers_catch_a_bad_order():
    """The two models above do fail when a rank posts a receive too early (so they can fail)."""
    from hios.graph import Edge, Graph, Operator
    from hios.schedule import Schedule
    g = Graph([Operator(n, 1.0) for n in "abcd"], [Edge("a", "b"), Edge("b", "c"), Edge("c", "d")])
    sched = Schedule([[("a",), ("c",)], [("b",), ("d",)]])
    dp = _check_program(g, sched, 2)  # a -> r1, b -> r0, c -> r1: three batches
    prog = stream_program(g, sched)
    segs = {s.id: s for s in prog.segments}
    acts = dp.ranks[1].actions
    recvs = [k for k, a in enumerate(acts) if a.kind == "recv"]
    assert len(recvs) == 2
    acts.insert(recvs[0], acts.pop(recvs[1]))  # rank 1 now posts the receive of c's value before a's
    with pytest.raises(AssertionError, match="in-order-queue deadlock"):
        _no_deadlock_in_order_queues(dp, segs, prog)
    send = next(k for k, a in enumerate(dp.ranks[0].actions) if a.kind == "send")
    dp.ranks[0].actions.append(dp.ranks[0].actions.pop(send))  # rank 0 sends a's value last
    with pytest.raises(AssertionError, match="blocking-host deadlock"):
        _no_deadlock_blocking_host(dp, segs)


def test_world_size_must_match_plan():
    g = layered_dag(12, 20, 3, 0.5, 1)
    sched = schedule(g, Machine(2), "hios-mr")
    prog = stream_program(g, sched)
    reads, values_of, inputs, outputs = _flow(g, prog)
    with pytest.raises(HiosError, match="2 GPU.*3 rank"):
        build_rank_programs(prog, reads, values_of, inputs, outputs, 3)
    reads[next(iter(reads))].append("nowhere")
    with pytest.raises(HiosError, match="nowhere"):
        build_rank_programs(prog, reads, values_of, inputs, outputs, 2)


# --------------------------------------------------------------------------- watchdog
class DictStore:
    """The part of a c10d store the watchdog uses, in memory and thread-safe."""

    def __init__(self):
        self.d = {}
        self.lock = threading.Lock()
        self.broken = False

    def set(self, k, v):
        with self.lock:
            if self.broken:
                raise RuntimeError("connection reset")
            self.d[k] = v.encode() if isinstance(v, str) else v

    def get(self, k):
        with self.lock:
            return self.d[k]

    def check(self, keys):
        with self.lock:
            if self.broken:
                raise RuntimeError("connection reset")
            return all(k in self.d for k in keys)


def _dogs(world, timeout, store=None, setup_timeout=None):
    store = store or DictStore()
    aborts = {}
    dogs = [Watchdog(lambda: store, r, world, timeout, interval=0.02, setup_timeout=setup_timeout,
                     on_abort=lambda line, r=r: aborts.setdefault(r, (time.monotonic(), line)))
            for r in range(world)]
    return store, dogs, aborts


def _wait_for(cond, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_watchdog_names_a_dead_rank():
    _, dogs, aborts = _dogs(3, timeout=0.5)
    for d in dogs:
        d.start()
        d.phase(8, "run")
    dogs[1].stop(done=False)  # rank 1 dies: its heartbeat stops
    t0 = time.monotonic()
    with dogs[0].waiting("values from rank 1"), dogs[2].waiting("values from rank 1"):
        assert _wait_for(lambda: 0 in aborts and 2 in aborts, 5.0)
    for r in (0, 2):
        when, line = aborts[r]
        assert line.startswith(f"hios run: error: rank {r}: gave up after waiting")
        assert "rank 1 stopped responding" in line and "'run'" in line
        assert when - t0 < 0.5 + 1.0
    assert 1 not in aborts
    for d in dogs:
        d.stop()


def test_watchdog_names_a_hung_rank_and_spares_short_waits():
    _, dogs, aborts = _dogs(2, timeout=0.3)
    for d in dogs:
        d.start()
    dogs[0].phase(8, "run")
    dogs[1].phase(8, "run")  # rank 1 stays "working" forever, heartbeat alive
    with dogs[0].waiting("a short wait"):
        time.sleep(0.1)
    time.sleep(0.4)
    assert not aborts  # waits shorter than the timeout, and not waiting at all, are fine
    with dogs[0].waiting("values from rank 1"):
        assert _wait_for(lambda: 0 in aborts, 3.0)
    assert "rank 1 is stuck in phase 'run'" in aborts[0][1]
    for d in dogs:
        d.stop()


def test_watchdog_allows_long_setup_of_a_live_peer():
    _, dogs, aborts = _dogs(2, timeout=0.2, setup_timeout=1.0)
    for d in dogs:
        d.start()
    dogs[1].phase(1, "setup:plan")  # rank 1 plans for a long time, alive
    dogs[0].phase(1, "setup:plan")
    t0 = time.monotonic()
    with dogs[0].waiting("the plan from rank 1"):
        assert _wait_for(lambda: 0 in aborts, 4.0)
    assert aborts[0][0] - t0 >= 0.9  # the setup allowance, not the plain timeout
    assert "rank 1 is stuck in phase 'setup:plan'" in aborts[0][1]
    for d in dogs:
        d.stop()


def test_watchdog_blame_and_lost_store():
    store, dogs, aborts = _dogs(2, timeout=5.0)
    for d in dogs:
        d.start()
    time.sleep(0.1)
    dogs[1].stop(done=False)
    assert "rank 1 stopped responding" in dogs[0].blame(wait=3.0)
    store.broken = True  # the store's host is gone
    assert _wait_for(lambda: 0 in aborts, 2.0)
    assert "lost the rendezvous store" in aborts[0][1]
    dogs[0].stop(done=False)


# --------------------------------------------------------------------------- start-up checks
def test_signatures_and_launch_env():
    from hios.runtime.distributed.check import compare_signatures
    from hios.runtime.distributed.launch import launch_env, parse_fault
    same = {"world": 2, "hash": "a" * 64, "plan_hash": "p", "model": {"name": "m"}, "options": {}}
    assert compare_signatures({0: same, 1: dict(same)}) is None
    other = dict(same, hash="b" * 64, plan_hash="q")
    msg = compare_signatures({0: same, 1: other})
    assert "rank 1" in msg and "plan" in msg
    assert "world size" in compare_signatures({0: same, 1: dict(same, world=3)})
    with pytest.raises(HiosError, match="torchrun"):
        launch_env({})
    env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "29500", "LOCAL_RANK": "1"}
    la = launch_env(env)
    assert (la.rank, la.world, la.local_rank, la.master_port) == (1, 2, 1, 29500)
    assert parse_fault("exit:2") == ("exit", 2) and parse_fault(None) is None
    with pytest.raises(HiosError):
        parse_fault("boom:1")


def test_distributed_job_refuses_what_it_cannot_honour():
    from hios.options import RunOptions
    from hios.runtime.distributed import DistributedJob
    from hios.program.levers import Levers
    job = DistributedJob(plan_file="p.json", run=RunOptions(sync="stage"))
    assert job.signature_options("gloo")["sync"] == "stage"  # every rank must agree on it
    for kw, msg in [({}, "give a plan file or model"),
                    ({"plan_file": "p.json", "make_plan": lambda: None}, "not both"),
                    ({"plan_file": "p.json", "timeout": 0}, "timeout must be positive"),
                    ({"plan_file": "p.json", "run": RunOptions(devices="cpu,cpu")}, "devices is for the local"),
                    ({"plan_file": "p.json", "device": "cuda:1"}, "takes cpu or cuda"),
                    ({"plan_file": "p.json", "run": RunOptions(levers=Levers(concat_inplace=True))}, "local backend"),
                    ({"plan_file": "p.json", "run": RunOptions(levers=Levers(priority="stream0"))}, "local backend"),
                    ({"plan_file": "p.json", "run": RunOptions(levers=Levers(cudnn_benchmark=True))},
                     "local backend")]:
        with pytest.raises(HiosError, match=msg):
            DistributedJob(**kw)


def test_rank0_reuses_the_capture_of_planning(monkeypatch):
    """build_and_capture never captures again what planning captured (and checks it against the plan)."""
    pytest.importorskip("torch")
    from hios.frontend import zoo
    from hios.frontend.capture import capture
    from hios.plan import Plan
    from hios.runtime.distributed import build_and_capture
    m, x = zoo.build(DAG, 16)
    cap = capture(m, x, DAG)
    g = cap.graph.with_costs([1.0] * len(cap.graph.ops))
    plan = Plan({"name": DAG, "image_size": 16, "batch": 1}, "test:unit", Machine(2), g,
                schedule(g, Machine(2), "hios-mr"), {}, {})

    def no_capture(*a, **k):
        raise AssertionError("captured twice")
    monkeypatch.setattr(sys.modules["hios.frontend.capture"], "capture", no_capture)
    model, inputs, captured = build_and_capture(plan, cap, m, x)
    assert captured is cap and model is m and inputs == x
    monkeypatch.undo()
    with pytest.raises(HiosError, match="a plan is data"):  # a factory the plan names is not imported
        build_and_capture(plan)
    _, _, again = build_and_capture(plan, given=DAG)  # the other ranks build and capture the named model
    assert again is not cap and again.graph.names == cap.graph.names


def test_wire_layout_roundtrip():
    torch = pytest.importorskip("torch")
    from hios.runtime.distributed.wire import Wire, from_wire, to_wire, wire_buffer
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    w = Wire.of(x)
    assert w.perm == (0, 2, 3, 1)
    sent = to_wire(x, w)
    assert sent.is_contiguous() and sent.data_ptr() == x.data_ptr()  # no copy for channels_last
    buf = wire_buffer(Wire.from_json(w.to_json()), "cpu")
    buf.copy_(sent)
    y = from_wire(buf, w)
    assert torch.equal(y, x) and y.stride() == x.stride()
    z = torch.randn(6, 4)[:, ::2]  # not dense: sent as a copy
    wz = Wire.of(z)
    assert torch.equal(from_wire(to_wire(z, wz).clone(), wz), z)


# --------------------------------------------------------------------------- building a rank's part
DAG = "hios.testing.dist_models:random_dag"


def _levels_schedule(graph):
    """Each topological level a stage, its operators dealt alternately to 2 GPUs: stages of
    several operators on several streams, so that stage barriers need events of their own."""
    from hios.schedule import Schedule
    depth = {}
    for i in graph.topo:
        depth[i] = 1 + max((depth[p] for p in graph.preds[i]), default=-1)
    levels = {}
    for i in graph.topo:
        levels.setdefault(depth[i], []).append(graph.ops[i].name)
    stages = [[], []]
    for _, names in sorted(levels.items()):
        for g in (0, 1):
            if names[g::2]:
                stages[g].append(tuple(names[g::2]))
    return Schedule(stages, "levels")


def test_sync_stage_reaches_the_rank_programs():
    """--sync stage builds the rank programs with the simulator's stage barriers: more events,
    and segments that wait for them; --sync data only for the values that cross streams."""
    torch = pytest.importorskip("torch")
    from hios.frontend.capture import capture
    from hios.options import SYNC_MODES, RunOptions
    from hios.runtime.distributed.build import build_rank
    from hios.testing.dist_models import RandomDAGNet
    # 20 operators (each sums its inputs, convolves, ReLU): levels wide enough that some stage
    # barrier orders operators no value links (the default 12-operator DAG has none)
    m, x = RandomDAGNet(nodes=20, edges=40).eval(), (torch.randn(1, 3, 16, 16),)
    cap = capture(m, x, "random_dag_20")
    sched = _levels_schedule(cap.graph)
    parts = {sync: build_rank(cap, sched, RunOptions(sync=sync).resolve(["cpu"]), 1, 2, torch.device("cpu"))
             for sync in SYNC_MODES}
    for sync, part in parts.items():
        assert part.exec_program.sync == sync
        assert part.exec_program.events == stream_program(cap.graph, sched, sync=sync).events
        assert part.segs and all(s.step.device == 1 for s in part.segs.values())  # only rank 1's segments

    def waits(part):
        return sum(len(a.local_waits) for p in part.program.ranks for a in p.actions if a.kind == "segment")
    assert parts["stage"].exec_program.events > parts["data"].exec_program.events
    assert waits(parts["stage"]) > waits(parts["data"])


# --------------------------------------------------------------------------- real launches (CPU, gloo)


def _needs_torch():
    pytest.importorskip("torch")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")


def _plan(path, model, size, gpus, algo="hios-mr"):
    """A plan file: unit operator costs, so that the scheduler spreads the model over the GPUs."""
    from hios.frontend import zoo
    from hios.frontend.capture import capture
    from hios.plan import Plan
    m, x = zoo.build(model, size)
    g = capture(m, x, model).graph
    g = g.with_costs([1.0] * len(g.ops))
    sched = schedule(g, Machine(gpus), algo)
    Plan({"name": model, "image_size": size, "batch": 1, "dtype": "float32"}, "test:unit", Machine(gpus), g,
         sched, {}, {}).save(path)
    return str(path)


def _env(extra=None):
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra or {})
    return env


RUN = ["-m", "hios", "run", "--backend", "distributed", "--device", "cpu", "--warmup", "1", "--repeats", "3",
       "--inner", "1"]


def _torchrun(nproc, args, timeout, env_extra=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           *RUN, *args]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(env_extra), cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish within {timeout} s: {str(e.stderr)[-2000:]}")
    return p, time.monotonic() - t0


def _errors(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("hios run: error: rank ")]


@pytest.mark.parametrize("model,size,ranks,sync", [("googlenet", 64, 2, "data"), (DAG, 16, 3, "stage")])
def test_torchrun_output_equals_model(tmp_path, model, size, ranks, sync):
    _needs_torch()
    if model == "googlenet":
        pytest.importorskip("torchvision")
    plan = _plan(tmp_path / "plan.json", model, size, ranks)
    named = ["--model", model] if ":" in model else []  # a plan's factory is imported only when named
    p, _ = _torchrun(ranks, [plan, *named, "--json", "--timeout", "30", "--sync", sync], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout[p.stdout.index("{"):])
    assert res["backend"] == "distributed" and res["comm_backend"] == "gloo" and res["world_size"] == ranks
    assert res["program"]["sync"] == sync  # --sync reaches the program that ran
    assert res["check"]["ok"] and res["check"]["relative"] <= 1e-4
    assert len(res["ranks"]) == ranks and res["program"]["transfers"] > 0
    assert all(r["operators"] > 0 and r["sends"] + r["recvs"] > 0 for r in res["ranks"])
    total = sum(r["weights_bytes"] for r in res["ranks"])  # each rank holds only its own weights
    assert total > 0 and all(r["weights_bytes"] < total for r in res["ranks"])
    assert res["plan_call"]["median_ms"] > 0


def test_torchrun_rank0_makes_the_plan():
    """--model instead of a plan file: rank 0 makes the plan (analytic H100 costs) and shares it."""
    _needs_torch()
    p, _ = _torchrun(2, ["--model", DAG, "--image-size", "16", "--gpus", "2", "--algo", "hios-mr", "--cost",
                         "h100", "--json", "--timeout", "30"], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout[p.stdout.index("{"):])
    assert res["world_size"] == 2 and res["check"]["ok"] and res["algorithm"] == "hios-mr"


def test_torchrun_refuses_wrong_world_size(tmp_path):
    _needs_torch()
    plan = _plan(tmp_path / "plan.json", DAG, 16, 3)
    p, _ = _torchrun(2, [plan, "--timeout", "20"], timeout=180)
    assert p.returncode != 0
    assert _errors(p.stderr) == ["hios run: error: rank 0: the plan has 3 GPU(s) but 2 rank(s) were started: start "
                                 "exactly one rank per GPU of the plan (torchrun --nproc-per-node 3 on one node)"]


def test_ranks_with_different_plans_are_refused(tmp_path):
    """Two ranks started by hand (as on two nodes), each with its own plan file: refused at start-up."""
    _needs_torch()
    import socket
    a = _plan(tmp_path / "a.json", DAG, 16, 2, "hios-mr")
    b = _plan(tmp_path / "b.json", DAG, 16, 2, "sequential")
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    procs = []
    for rank, plan in ((0, a), (1, b)):
        env = _env({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port)})
        procs.append(subprocess.Popen([sys.executable, *RUN, plan, "--model", DAG, "--timeout", "20"], env=env,
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for pr in procs:
            outs.append(pr.communicate(timeout=120))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
    assert all(pr.returncode == 2 for pr in procs)
    err = outs[0][1]
    assert "refusing to start: rank 1 runs a different plan or model than rank 0 (differs in: plan" in err
    assert not _errors(outs[1][1])  # said once, by rank 0


@pytest.mark.parametrize("fault", ["exit", "hang"])
def test_torchrun_failed_rank_stops_the_others(tmp_path, fault):
    _needs_torch()
    timeout = 5
    plan = _plan(tmp_path / "plan.json", DAG, 16, 3)
    p, took = _torchrun(3, [plan, "--model", DAG, "--timeout", str(timeout)], timeout=240,
                        env_extra={"HIOS_DIST_FAULT": f"{fault}:1"})
    assert p.returncode != 0
    lines = _errors(p.stderr)
    assert lines, p.stderr[-3000:]
    assert all("rank 1" in ln.split(":", 2)[2] for ln in lines)  # the culprit is named
    assert not any(ln.startswith("hios run: error: rank 1:") for ln in lines)
    if fault == "hang":
        assert any("gave up after waiting" in ln and "rank 1 is stuck in phase 'run'" in ln for ln in lines)
        assert any(f"(--timeout {timeout})" in ln for ln in lines)  # the CLI names the option by its flag
    else:
        assert any("rank 1 stopped" in ln for ln in lines)


def test_cli_refuses_planning_options_with_a_plan_file_before_launch(tmp_path, capsys):
    """The distributed backend honours every option of 'hios run' or refuses it, as the local one."""
    _needs_torch()
    from hios.cli import main
    path = tmp_path / "p.json"
    _plan(path, "googlenet", 64, 2)
    assert main(["run", str(path), "--backend", "distributed", "--gpus", "3"]) == 2
    assert "--gpus shapes a plan made with --model" in capsys.readouterr().err
