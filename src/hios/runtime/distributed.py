"""Distributed runtime: one process (rank) per GPU of a plan, values moved by send/recv.

Started by ``torchrun --nproc-per-node N -m hios run --backend distributed ...``; rank *r* runs
the operators that the plan gives GPU *r*.  Steps, on every rank:

  1. Rendezvous (torchrun's environment: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) and start
     the watchdog (:mod:`.dist_watchdog`): heartbeats through the rendezvous store, so that a
     rank that dies or hangs makes every other rank leave within ``--timeout`` seconds with a
     message naming it.
  2. Get the plan: every rank reads the plan file, or (``--model ... --gpus N``) rank 0 makes it
     and hands it to the others through the store.  The world size must equal the plan's GPU
     count.
  3. Build the model and capture it; check that the plan matches the capture.  All ranks publish
     a hash of plan + model + capture + run options and compare: any mismatch stops every rank.
  4. Join the process group: NCCL on GPUs (rank *r* on ``cuda:LOCAL_RANK``), gloo on CPU.
  5. Cut the schedule into segments with the single-process runtime's
     :func:`~hios.runtime.segmenting.stream_program` and derive the rank programs
     (:mod:`.dist_program`): which values cross ranks, in which batches, in a global order that
     cannot deadlock.  Build only this rank's segments, placed on its device (and compiled with
     Inductor on CUDA, as the single-process runtime does); drop the rest of the model, so the
     rank holds only its own weights.
  6. Warm up: run the program eagerly; the first run publishes the shape, dtype and memory
     layout of every value a rank sends, so that receivers allocate matching buffers.
  7. On GPUs, capture the rank's whole part (its streams, events and NCCL sends/receives) as one
     CUDA graph; if any rank cannot, every rank runs eagerly and the result says why.
  8. Run: every rank makes the same calls (so sends and receives always pair up) and times them
     as the single-process ``hios run`` does (:mod:`hios.runtime.bench`: CUDA events around
     back-to-back calls on GPUs, wall clock on CPU); rank 0's figures are reported, since a call
     on rank 0 spans sending the input to holding the output.  Rank 0 assembles the output,
     compares it with ``model(x)`` (``--check``, the default) and prints the single-process
     report plus the backend and the ranks.

Fault injection for tests: ``HIOS_DIST_FAULT=exit:R`` makes rank R leave (exit code 0) when the
timed run starts, ``HIOS_DIST_FAULT=hang:R`` makes it hang there.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..errors import HiosError
from .dist_program import INPUT, DistProgram, build_rank_programs
from .dist_watchdog import EXIT_CODE, Watchdog, format_exit

DEFAULT_TIMEOUT = 60.0
ERROR_EXIT = 2
_PHASES = ["setup:start", "setup:plan", "setup:build", "setup:check", "setup:init", "setup:segments",
           "setup:warmup", "setup:capture", "run", "finish"]
_PHASE_LOG = {"setup:plan": "getting the plan", "setup:build": "capturing the model",
              "setup:init": "joining the process group", "setup:segments": "building this rank's segments",
              "setup:warmup": "warming up", "setup:capture": "capturing each rank's part as a CUDA graph",
              "run": "timing"}


class DistError(HiosError):
    """A failure of the distributed run, already phrased for the user."""


def _quiet(e: DistError) -> DistError:
    """Mark an error every rank sees alike: only rank 0 prints it."""
    e.quiet = True
    return e


class PeerError(DistError):
    """Communication with a peer rank broke (it died or closed its connections)."""


# --------------------------------------------------------------------------- launch environment
@dataclass
class Launch:
    rank: int
    world: int
    local_rank: int
    master_addr: str
    master_port: int
    restart: int


def launch_env(environ=None) -> Launch:
    """torchrun's variables; a one-line error when they are missing."""
    env = os.environ if environ is None else environ
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise HiosError(f"--backend distributed must be started by torchrun (no {missing[0]} in the environment): "
                        "torchrun --nproc-per-node N -m hios run --backend distributed ...")
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", env["RANK"]))
        port = int(env["MASTER_PORT"])
    except ValueError:
        raise HiosError("torchrun's RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be integers") from None
    return Launch(rank, world, local, env["MASTER_ADDR"], port, int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0))


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    kind, _, r = spec.partition(":")
    if kind not in ("exit", "hang") or not r.strip().isdigit():
        raise HiosError(f"HIOS_DIST_FAULT={spec!r}: expected exit:RANK or hang:RANK")
    return kind, int(r)


# --------------------------------------------------------------------------- hashing
def run_signature(plan_dict: dict, graph, options: dict) -> str:
    """SHA-256 of what every rank must agree on: the plan, the captured model, the run options."""
    cap = {"ops": [[op.name, op.meta.get("nodes", [])] for op in graph.ops],
           "edges": sorted([e.src, e.dst] for e in graph.edges),
           "inputs": graph.meta.get("inputs")}
    blob = json.dumps({"plan": plan_dict, "capture": cap, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def compare_signatures(sigs: dict[int, dict]) -> str | None:
    """A one-line complaint about ranks whose start-up record differs from rank 0's, or None."""
    ref = sigs[0]
    for r in sorted(sigs):
        s = sigs[r]
        if s.get("world") != ref.get("world"):
            return f"rank {r} sees world size {s.get('world')}, rank 0 sees {ref.get('world')}"
        if s.get("hash") != ref.get("hash"):
            why = []
            for k in ("plan_hash", "model", "options"):
                if s.get(k) != ref.get(k):
                    why.append(k.replace("_hash", ""))
            return (f"rank {r} runs a different plan or model than rank 0 (differs in: "
                    f"{', '.join(why) or 'the captured graph'}; hash {s.get('hash', '')[:12]} vs "
                    f"{ref.get('hash', '')[:12]}); start every rank with the same plan and options")
    return None


# --------------------------------------------------------------------------- the context
@dataclass
class Ctx:
    launch: Launch
    store: Any
    watchdog: Watchdog
    prefix: str
    device: Any = None
    backend: str = ""
    timeout: float = DEFAULT_TIMEOUT
    phase_index: int = 0
    pg: bool = False
    verbose: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.launch.rank

    def phase(self, name: str) -> None:
        self.phase_index = _PHASES.index(name)
        self.watchdog.phase(self.phase_index, name)
        if self.verbose and self.rank == 0 and name in _PHASE_LOG:
            print(f"hios run: {_PHASE_LOG[name]}...", file=sys.stderr, flush=True)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def gather(self, name: str, value: str, what: str) -> dict[int, str]:
        """All-gather a string through the store (every rank sets its own key, then reads all)."""
        keys = [self.key(f"{name}/{r}") for r in range(self.launch.world)]
        try:
            self.store.set(keys[self.rank], value)
            with self.watchdog.waiting(what):
                self.store.wait(keys, datetime.timedelta(seconds=self.watchdog.setup_timeout + 60))
            return {r: self.store.get(k).decode() for r, k in enumerate(keys)}
        except RuntimeError as e:  # c10d's store errors derive from RuntimeError
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DistError(f"lost the rendezvous store while waiting for {what} ({first[:200]}); "
                            "the launcher or rank 0, which hosts it, has stopped") from None


def _connect(launch: Launch, timeout: float):
    import torch.distributed as dist

    def client():
        return dist.TCPStore(launch.master_addr, launch.master_port, is_master=False,
                             timeout=datetime.timedelta(seconds=max(timeout, 30)), wait_for_workers=False)

    store, _, _ = next(dist.rendezvous("env://", rank=launch.rank, world_size=launch.world,
                                       timeout=datetime.timedelta(seconds=max(timeout, 30))))
    return store, client


def _die(ctx: Ctx | None, rank: int, message: str, code: int = ERROR_EXIT) -> None:
    """Print one line and leave at once (no process-group teardown that could wait for dead peers)."""
    print(format_exit(rank, message), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


# --------------------------------------------------------------------------- step 2: the plan
def _plan_from_text(text: str, where: str):
    """(Plan, its JSON dict) from the text of a plan file."""
    from ..plan import Plan
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise HiosError(f"{where}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(d, dict) or d.get("format") != "hios-plan":
        raise HiosError(f"{where}: not a hios plan (make one with 'hios optimize')")
    return Plan.from_dict(d, where), d


def obtain_plan(ctx: Ctx, args):
    """Every rank gets the same plan: its file, or the one rank 0 makes (``--model``), via the store."""
    from ..cli.run import make_plan  # temporary: replaced by the typed DistributedJob
    if getattr(args, "plan", None):
        if getattr(args, "model", None):
            raise HiosError("give either a plan file or --model, not both")
        try:
            with open(args.plan) as f:
                text = f.read()
        except OSError as e:
            raise HiosError(f"{args.plan}: cannot read plan: {e.strerror}") from None
        return _plan_from_text(text, args.plan)
    key = ctx.key("plan")
    if ctx.rank == 0:
        text = json.dumps(make_plan(args)[0].to_dict())
        ctx.store.set(key, text)
    else:
        if not getattr(args, "model", None):
            raise HiosError("give a plan file or --model")
        with ctx.watchdog.waiting("the plan from rank 0"):
            ctx.store.wait([key], datetime.timedelta(seconds=ctx.watchdog.setup_timeout + 60))
        text = ctx.store.get(key).decode()
    return _plan_from_text(text, "the plan made by rank 0")


# --------------------------------------------------------------------------- value layout on the wire
@dataclass(frozen=True)
class Wire:
    """How a value travels: its logical shape, dtype and the dim order that makes it contiguous."""

    shape: tuple[int, ...]
    dtype: str
    perm: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps([list(self.shape), self.dtype, list(self.perm)])

    @classmethod
    def from_json(cls, s: str) -> "Wire":
        shape, dtype, perm = json.loads(s)
        return cls(tuple(shape), dtype, tuple(perm))

    @classmethod
    def of(cls, t) -> "Wire":
        order = sorted(range(t.dim()), key=lambda i: (-t.stride(i), i))
        return cls(tuple(t.shape), str(t.dtype).replace("torch.", ""), tuple(order))


def to_wire(t, w: Wire):
    """The contiguous tensor to send (no copy when the layout matches ``w.perm``)."""
    return t.permute(w.perm).contiguous()


def from_wire(buf, w: Wire):
    inv = [0] * len(w.perm)
    for k, p in enumerate(w.perm):
        inv[p] = k
    return buf.permute(inv)


def wire_buffer(w: Wire, device):
    import torch
    return torch.empty([w.shape[p] for p in w.perm], dtype=getattr(torch, w.dtype), device=device)


# --------------------------------------------------------------------------- the rank's part
def graph_support(torch, p2p: bool) -> str | None:
    """Why the installed versions cannot capture this rank's part in a CUDA graph (None: they can).
    NCCL can capture send/recv from 2.9 on, with CUDA 11.3 or later."""
    if not p2p:
        return None
    try:
        nccl = tuple(torch.cuda.nccl.version())
    except Exception as e:  # no NCCL in this build of torch
        return f"cannot read the NCCL version ({type(e).__name__})"
    if nccl < (2, 9):
        return f"NCCL {'.'.join(map(str, nccl))} cannot capture send/recv in CUDA graphs (needs 2.9 or later)"
    cuda = torch.version.cuda or "0"
    parts = tuple(int(x) for x in cuda.split(".")[:2] if x.isdigit())
    if parts < (11, 3):
        return f"CUDA {cuda} cannot capture NCCL operations in CUDA graphs (needs 11.3 or later)"
    return None



class RankRunner:
    """Runs one rank's program: its segments, sends and receives, eagerly or as a CUDA graph."""

    def __init__(self, ctx: Ctx, program: DistProgram, exec_program, segs: dict,
                 input_names: list[str], out_spec, kernels: str, channels_last: bool):
        import torch
        self.torch = torch
        self.ctx = ctx
        self.rank = ctx.rank
        self.prog = program.ranks[ctx.rank]
        self.exec = exec_program
        self.segs = segs
        self.input_names = input_names
        self.out_spec = out_spec
        self.kernels = kernels
        self.channels_last = channels_last
        self.device = ctx.device
        self.is_cuda = self.device.type == "cuda"
        self.wires: dict[str, Wire] = {}
        self.graph = None
        self.static_in: list | None = None
        self.static_out = None
        self._first = True
        if self.is_cuda:
            n = self.exec.streams[self.rank] if self.rank < len(self.exec.streams) else 1
            self.streams = [None] + [torch.cuda.Stream(self.device) for _ in range(max(n, 1) - 1)]
            self.comm = torch.cuda.Stream(self.device)
            self.events = [torch.cuda.Event() for _ in range(self.exec.events)]
            self.send_events = {a.step: torch.cuda.Event() for a in self.prog.actions
                                if a.kind == "segment" and a.feeds}

    # -- helpers ---------------------------------------------------------------------------
    def _run_segment(self, seg, env: dict) -> None:
        seg.run(env, self._first, self.ctx.notes.append)

    def _wire_out(self, value: str, t) -> Any:
        w = self.wires.get(value)
        if w is None:
            if not isinstance(t, self.torch.Tensor):
                raise DistError(f"value {value!r} is a {type(t).__name__}, not a tensor: it cannot be sent")
            w = Wire.of(t)
            self.wires[value] = w
            self.ctx.store.set(self.ctx.key(f"wire/{value}"), w.to_json())
        return to_wire(t, w)

    def _wire_in(self, value: str, src: int) -> Wire:
        w = self.wires.get(value)
        if w is None:
            key = self.ctx.key(f"wire/{value}")
            with self.ctx.watchdog.waiting(f"the layout of {value!r} from rank {src}"):
                self.ctx.store.wait([key], datetime.timedelta(seconds=self.ctx.watchdog.setup_timeout + 60))
            w = Wire.from_json(self.ctx.store.get(key).decode())
            self.wires[value] = w
        return w

    def _post_send(self, batch, env, works: list) -> None:
        import torch.distributed as dist
        ops = [dist.P2POp(dist.isend, self._wire_out(t.value, env[t.value]), t.dst, tag=t.tag)
               for t in batch.transfers]
        works.extend(dist.batch_isend_irecv(ops))

    def _post_recv(self, batch, env, recv_works: dict) -> None:
        import torch.distributed as dist
        ops = []
        for t in batch.to(self.rank):
            w = self._wire_in(t.value, t.src)
            buf = wire_buffer(w, self.device)
            env[t.value] = from_wire(buf, w)
            ops.append(dist.P2POp(dist.irecv, buf, t.src, tag=t.tag))
        recv_works[batch.index] = dist.batch_isend_irecv(ops)

    def _wait_cpu(self, works, what: str, peers) -> None:
        with self.ctx.watchdog.waiting(what):
            try:
                for w in works:
                    w.wait()
            except RuntimeError as e:
                who = ", ".join(f"rank {p}" for p in sorted(set(peers)))
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise PeerError(f"{who} stopped: communication with it failed while waiting for {what} "
                                f"({first[:200]})") from None

    # -- one inference -------------------------------------------------------------------------
    def _issue(self, inputs: list) -> Any:
        env: dict[str, Any] = {}
        if self.rank == 0:
            env.update(zip(self.input_names, inputs))
        sends: list = []
        recvs: dict[int, list] = {}
        if self.is_cuda:
            self._issue_cuda(env, sends, recvs)
        else:
            self._issue_cpu(env, sends, recvs)
        if self.rank != 0:
            return None
        import torch.utils._pytree as pytree
        return pytree.tree_map(lambda leaf: env[leaf] if isinstance(leaf, str) else leaf, self.out_spec)

    def _issue_cpu(self, env, sends, recvs) -> None:
        for a in self.prog.actions:
            if a.kind == "segment":
                for b in a.recv_waits:
                    src = self._src_of[b]
                    self._wait_cpu(recvs.pop(b, ()), f"values from rank {src}", [src])
                self._run_segment(self.segs[a.step], env)
            elif a.kind == "send":
                self._post_send(a.batch, env, sends)
            else:
                self._post_recv(a.batch, env, recvs)
        for b in list(recvs):
            src = self._src_of[b]
            self._wait_cpu(recvs.pop(b), f"values from rank {src}", [src])
        self._wait_cpu(sends, "its sends to be received", self._send_peers)

    def _issue_cuda(self, env, sends, recvs) -> None:
        torch = self.torch
        main = torch.cuda.current_stream(self.device)
        fork = torch.cuda.Event()
        fork.record(main)
        side = [s for s in self.streams if s is not None] + [self.comm]
        for s in side:
            s.wait_event(fork)
        waited: set[tuple[int, int]] = set()
        for a in self.prog.actions:
            if a.kind == "segment":
                st = self.segs[a.step].step
                stream = self.streams[st.stream] or main
                with torch.cuda.stream(stream):
                    for e in a.local_waits:
                        stream.wait_event(self.events[e])
                    for b in a.recv_waits:
                        if (b, st.stream) not in waited:
                            waited.add((b, st.stream))
                            for w in recvs[b]:
                                w.wait()
                    self._run_segment(self.segs[a.step], env)
                    if st.record is not None:
                        self.events[st.record].record(stream)
                    if a.feeds:
                        self.send_events[a.step].record(stream)
            elif a.kind == "send":
                with torch.cuda.stream(self.comm):
                    if a.batch.producer != INPUT:
                        self.comm.wait_event(self.send_events[a.batch.producer])
                    self._post_send(a.batch, env, sends)
            else:
                with torch.cuda.stream(self.comm):
                    self._post_recv(a.batch, env, recvs)
        for s in side:
            main.wait_stream(s)
        for w in sends:
            w.wait()
        for ws in recvs.values():
            for w in ws:
                w.wait()

    # -- public --------------------------------------------------------------------------------
    def prepare(self, inputs: list) -> None:
        self._src_of = {a.batch.index: a.batch.src for a in self.prog.actions if a.kind == "recv"}
        self._send_peers = sorted({t.dst for t in self.prog.sends})
        torch = self.torch
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        self.static_in = [x.to(self.device, memory_format=fmt if x.dim() == 4 else torch.preserve_format)
                          if isinstance(x, torch.Tensor) else x for x in inputs]

    def eager(self) -> Any:
        with self.torch.no_grad():
            out = self._issue(self.static_in)
        self._first = False
        return out

    def capture(self) -> str | None:
        """Capture the rank's part in a CUDA graph; returns why not, or None on success."""
        torch = self.torch
        if not self.is_cuda:
            return "CUDA graphs need CUDA devices"
        why = graph_support(torch, bool(self.prog.sends or self.prog.recvs))
        if why:
            return why
        g = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            with torch.no_grad(), torch.cuda.graph(g, capture_error_mode="thread_local"):
                out = self._issue(self.static_in)
            torch.cuda.synchronize(self.device)
        except Exception as e:
            try:
                torch.cuda.synchronize(self.device)
            except Exception:  # the device may be unusable after a failed capture; the reason says why
                pass
            return f"CUDA-graph capture failed on rank {self.rank}: {type(e).__name__}: " \
                   f"{str(e).splitlines()[0] if str(e) else ''}"
        self.graph = g
        self.static_out = out
        return None

    def drop_graph(self) -> None:
        if self.graph is not None:
            self.graph.reset()
        self.graph = None
        self.static_out = None

    def call(self, *x) -> Any:
        """One inference, not waited for on GPUs: rank 0 copies ``x`` into its static input and
        gets the output (the other ranks pass nothing and get None)."""
        torch = self.torch
        if x and self.rank == 0:
            for buf, v in zip(self.static_in, x):
                if isinstance(buf, torch.Tensor):
                    buf.copy_(v, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            return self.static_out
        return self.eager()

    def warm(self, calls: int) -> None:
        """Eager calls before any capture; on GPUs on a side stream, as CUDA-graph capture wants."""
        torch = self.torch
        if not self.is_cuda:
            for _ in range(calls):
                self.call()
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(calls):
                self.call()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.sync("the warm-up calls")

    def replay(self) -> None:
        self.graph.replay()

    def sync(self, what: str = "the GPU") -> None:
        if self.is_cuda:
            with self.ctx.watchdog.waiting(what):
                self.torch.cuda.synchronize(self.device)


# --------------------------------------------------------------------------- building the rank
def _weights_bytes(modules) -> int:
    import torch
    seen = set()
    total = 0
    for m in modules:
        tensors = list(m.parameters()) + list(m.buffers())
        for mod in m.modules():
            tensors += [v for v in vars(mod).values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            key = (t.device, t.data_ptr())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def build_rank(ctx: Ctx, captured, schedule, kernels: str, channels_last: bool):
    """Steps 5: the programs of all ranks and the placed segments of this one."""
    from ..frontend.segments import build_segment, output_names
    from .executor import Seg
    from .segmenting import stream_program
    import torch.utils._pytree as pytree

    exec_prog = stream_program(captured.graph, schedule)
    reads: dict[int, list[str]] = {}
    built: dict[int, Any] = {}
    for st in exec_prog.segments:
        seg = build_segment(captured, list(st.ops))
        reads[st.id] = list(seg.inputs)
        if st.device == ctx.rank:
            built[st.id] = seg
    out_spec = output_names(captured)
    outputs = [leaf for leaf in pytree.tree_leaves(out_spec) if isinstance(leaf, str)]
    values_of = {op.name: list(op.meta.get("nodes", [])) for op in captured.graph.ops}
    program = build_rank_programs(exec_prog, reads, values_of, list(captured.input_names), outputs,
                                  ctx.launch.world)
    cache: dict = {}
    segs: dict = {}
    steps = {s.id: s for s in exec_prog.segments}
    for sid, seg in built.items():
        segs[sid] = Seg.build(steps[sid], seg, ctx.device, kernels, channels_last, cache)
    cache.clear()
    weights = _weights_bytes([s.eager for s in segs.values()])
    return exec_prog, program, segs, out_spec, weights


# --------------------------------------------------------------------------- main
def _options_of(args) -> dict:
    return {k: getattr(args, k, None) for k in ("device", "check", "warmup", "repeats", "inner", "kernels", "mode",
                                                 "tf32", "sync")}


def _setup_device(ctx: Ctx, args) -> None:
    import torch
    want = getattr(args, "device", None)
    if want not in (None, "cpu", "cuda"):
        raise HiosError(f"--device {want!r}: the distributed backend takes cpu or cuda (each rank uses "
                        "cuda:LOCAL_RANK)")
    if want == "cpu" or (want is None and not torch.cuda.is_available()):
        ctx.device = torch.device("cpu")
        ctx.backend = "gloo"
        return
    if not torch.cuda.is_available():
        raise HiosError("--device cuda asked for, but CUDA is not available (use --device cpu)")
    n = torch.cuda.device_count()
    if ctx.launch.local_rank >= n:
        raise HiosError(f"local rank {ctx.launch.local_rank} has no GPU: this node has {n}; start at most "
                        f"{n} rank(s) per node")
    torch.cuda.set_device(ctx.launch.local_rank)
    ctx.device = torch.device("cuda", ctx.launch.local_rank)
    ctx.backend = "nccl"


def _init_pg(ctx: Ctx) -> None:
    import torch
    import torch.distributed as dist
    kw = {}
    if ctx.backend == "nccl":
        kw["device_id"] = ctx.device
    # The process group's own timeout is longer than ours, so the watchdog speaks first.
    dist.init_process_group(ctx.backend, store=dist.PrefixStore(ctx.key("pg"), ctx.store), rank=ctx.rank,
                            world_size=ctx.launch.world,
                            timeout=datetime.timedelta(seconds=ctx.watchdog.setup_timeout + 60), **kw)
    ctx.pg = True
    t = torch.zeros(1, device=ctx.device)
    with ctx.watchdog.waiting("every rank to join the process group"):
        dist.all_reduce(t)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)


def run_distributed(ctx: Ctx, args) -> dict | None:
    """Steps 2-8 on this rank; rank 0 returns the result record."""
    import torch
    from ..frontend import zoo
    from ..frontend.capture import capture
    from ..options import RunOptions
    from .executor import check_plan_graph, check_plan_inputs

    world = ctx.launch.world
    ctx.phase("setup:plan")
    plan, plan_dict = obtain_plan(ctx, args)
    gpus = max(plan.schedule.gpus, plan.machine.gpus)
    if gpus != world:
        raise _quiet(DistError(f"the plan has {gpus} GPU(s) but {world} rank(s) were started: start exactly one "
                               f"rank per GPU of the plan (torchrun --nproc-per-node {gpus} on one node)"))
    _setup_device(ctx, args)
    ctx.phase("setup:build")
    spec = plan.model
    model, inputs = zoo.build(spec["name"], int(spec["image_size"]), int(spec.get("batch", 1) or 1))
    captured = capture(model, inputs, spec["name"])
    check_plan_graph(plan.graph, captured.graph)
    check_plan_inputs(spec, plan.graph, tuple(captured.example_inputs))
    options = _options_of(args)
    options["backend"] = ctx.backend
    ctx.phase("setup:check")
    mine = {"world": world, "hash": run_signature(plan_dict, captured.graph, options),
            "plan_hash": hashlib.sha256(json.dumps(plan_dict, sort_keys=True).encode()).hexdigest(),
            "model": spec, "options": options}
    sigs = {r: json.loads(v) for r, v in ctx.gather("hello", json.dumps(mine, sort_keys=True, default=str),
                                                    "every rank's start-up check").items()}
    bad = compare_signatures(sigs)
    if bad:
        raise _quiet(DistError(f"refusing to start: {bad}"))

    ctx.phase("setup:init")
    _init_pg(ctx)

    ctx.phase("setup:segments")
    kernels = RunOptions(kernels=getattr(args, "kernels", None)).resolve([str(ctx.device)]).kernels
    channels_last = kernels == "inductor" and ctx.device.type == "cuda"
    reference = None
    if ctx.rank == 0 and getattr(args, "check", False):
        import copy
        with torch.no_grad():  # model(x) on rank 0's device, before the rank drops the other weights
            ref_model = copy.deepcopy(model).to(ctx.device).eval()
            reference = ref_model(*[x.to(ctx.device) for x in inputs])
            del ref_model
    from ..schedule import Schedule
    sched = Schedule([list(sts) for sts in plan.schedule.stages] + [[] for _ in range(gpus - plan.schedule.gpus)],
                     plan.schedule.algorithm, dict(plan.schedule.meta))
    exec_prog, program, segs, out_spec, weights = build_rank(ctx, captured, sched, kernels, channels_last)
    input_names = list(captured.input_names)
    n_ops = sum(len(s.step.ops) for s in segs.values())
    del model, captured  # the rank keeps only its own segments (and their weights)
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    runner = RankRunner(ctx, program, exec_prog, segs, input_names, out_spec, kernels, channels_last)
    runner.prepare(list(inputs))

    ctx.phase("setup:warmup")  # the first calls also compile (Inductor) and exchange value layouts
    runner.warm(max(1, int(getattr(args, "warmup", 5))))

    mode = getattr(args, "mode", None) or ("graph" if ctx.device.type == "cuda" else "stream")
    if mode == "graph" and ctx.device.type != "cuda":
        raise DistError("--mode graph needs CUDA devices; use --mode stream (or no --mode) with --device cpu")
    graph_reason = None
    if mode == "graph":
        ctx.phase("setup:capture")
        why = runner.capture()
        votes = ctx.gather("graph", why or "", "every rank's CUDA-graph capture")
        fails = [v for _, v in sorted(votes.items()) if v]
        if fails:
            graph_reason = fails[0]
            runner.drop_graph()
        runner.call()  # the first replay (or eager call), untimed
        runner.sync("the first replay")

    fault = parse_fault(os.environ.get("HIOS_DIST_FAULT"))
    ctx.phase("run")
    if fault is not None and fault[1] == ctx.rank:
        if fault[0] == "exit":
            os._exit(0)
        while True:
            time.sleep(1)
    from .bench import RTOL_FP32, RTOL_TF32, TimingOptions, compare_outputs, time_call
    settings = TimingOptions(int(getattr(args, "warmup", 5)), int(getattr(args, "repeats", 30)),
                              int(getattr(args, "inner", 5)))
    xd = tuple(x.to(ctx.device) if isinstance(x, torch.Tensor) else x for x in inputs)
    out = None
    with torch.no_grad():
        if getattr(args, "check", False):  # every rank takes part; rank 0 compares
            out = runner.call(*xd)
            runner.sync("the checked inference")
            out = _clone_tree(out)
        # Every rank times the same calls (the same count), so sends and receives always pair up;
        # rank 0's figure is the one reported: it sends the input and ends holding the output.
        with ctx.watchdog.waiting("the timed inferences") if ctx.device.type == "cuda" else nullcontext():
            call_stats = time_call(lambda: runner.call(*xd), (), ctx.device, settings)
            replay_stats = None
            if runner.graph is not None:
                replay_stats = time_call(runner.replay, (), ctx.device, settings)

    ctx.phase("finish")
    me = {"rank": ctx.rank, "device": str(ctx.device), "segments": len(segs), "operators": n_ops,
          "weights_bytes": weights, "sends": len(program.ranks[ctx.rank].sends),
          "recvs": len(program.ranks[ctx.rank].recvs), "cuda_graph": runner.graph is not None,
          "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
          "host": os.uname().nodename, "plan_call_ms": call_stats.median_ms, "notes": ctx.notes}
    per_rank = {r: json.loads(v) for r, v in ctx.gather("report", json.dumps(me), "every rank's report").items()}
    if ctx.rank != 0:
        return None
    ranks = [per_rank[r] for r in sorted(per_rank)]
    from .bench import predicted_latency
    summary = exec_prog.summary()
    summary.update({"transfers": len(program.transfers), "batches": len(program.batches),
                    "segments": len(exec_prog.segments)})
    tf32 = bool(getattr(args, "tf32", False))
    result: dict = {
        "backend": "distributed", "comm_backend": ctx.backend, "world_size": world,
        "model": spec.get("name"), "image_size": spec.get("image_size"), "batch": spec.get("batch", 1),
        "devices": [f"rank {r['rank']}: {r['device']}@{r['host']}" for r in ranks],
        "device_name": me["device_name"], "algorithm": plan.schedule.algorithm, "kernels": kernels,
        "mode": "graph" if runner.graph is not None else "stream", "fallback_reason": graph_reason,
        "tf32": tf32, "program": summary, "warnings": [n for r in ranks for n in r["notes"]],
        "plan_call": call_stats.to_dict(), "plan_replay": replay_stats.to_dict() if replay_stats else None,
        "baselines": None, "predicted_ms": predicted_latency(plan), "cost_source": getattr(plan, "cost_source", None),
        "ranks": ranks,
    }
    if reference is not None:
        chk = compare_outputs(out, reference, RTOL_TF32 if tf32 else RTOL_FP32)
        result["max_abs_diff"] = chk.max_abs_diff
        result["check"] = chk.to_dict()
    return result


def _clone_tree(out):
    import torch
    import torch.utils._pytree as pytree
    return pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)


def format_result(res: dict) -> str:
    """The single-process report, plus the ranks."""
    from .run_report import format_report
    lines = [f"backend distributed: {res['world_size']} rank(s), {res['comm_backend']}; "
             f"{res['program']['transfers']} value(s) cross ranks in {res['program']['batches']} batch(es)",
             format_report(res)]
    for r in res["ranks"]:
        lines.append(f"  rank {r['rank']} on {r['device']} ({r['device_name']}, {r['host']}): {r['operators']} operators "
                     f"in {r['segments']} segments, {r['weights_bytes'] / 2**20:.2f} MiB of weights, "
                     f"{r['sends']} sends, {r['recvs']} receives" + (", CUDA graph" if r["cuda_graph"] else ""))
    return "\n".join(lines)


def main(args) -> int:
    """Entry point of ``hios run --backend distributed`` (one call per rank)."""
    launch = launch_env()
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
    if not timeout > 0:
        raise HiosError(f"--timeout must be positive, got {timeout:g}")
    for k, lo in (("warmup", 0), ("repeats", 1), ("inner", 1)):
        v = getattr(args, k, lo)
        if v is not None and v < lo:
            raise HiosError(f"--{k} must be at least {lo}, got {v}")
    if getattr(args, "devices", None):
        raise HiosError("--devices is for the local backend; with --backend distributed rank r uses "
                        "cuda:LOCAL_RANK (or --device cpu)")
    ctx = None
    try:
        store, client = _connect(launch, timeout)
        prefix = f"hios/{launch.restart}/"
        wd = Watchdog(client, launch.rank, launch.world, timeout, prefix=prefix)
        ctx = Ctx(launch, store, wd, prefix, timeout=timeout, verbose=not getattr(args, "json", False))
        wd.start()
        from ..timing import set_precision
        set_precision(bool(getattr(args, "tf32", False)))
        res = run_distributed(ctx, args)
    except PeerError as e:
        _die(ctx, launch.rank, str(e), EXIT_CODE)
    except DistError as e:
        if not getattr(e, "quiet", False) or ctx is None:
            _die(ctx, launch.rank, str(e))
        _report_once(ctx, str(e))
    except HiosError as e:
        _die(ctx, launch.rank, str(e))
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if ctx is not None and ctx.pg:  # a failed peer shows up as a communication error: name the rank
            _die(ctx, launch.rank, f"{ctx.watchdog.blame()} ({type(e).__name__}: {first[:200]})", EXIT_CODE)
        traceback.print_exc()
        _die(ctx, launch.rank, f"{type(e).__name__}: {first[:300]}")
    code = 0
    if res is not None:
        if getattr(args, "json", False):
            print(json.dumps(res, indent=1, default=str))
        else:
            print(format_result(res))
        sys.stdout.flush()
        if "check" in res and not res["check"]["ok"]:
            code = 1
    ctx.watchdog.stop(done=True)
    _leave_together(ctx)
    try:
        import torch.distributed as dist
        if ctx.pg:
            dist.destroy_process_group()
    except Exception:  # teardown errors after a complete run change nothing of the result
        pass
    return code


def _leave_together(ctx: Ctx) -> None:
    """After a complete run: rank 0 (which may host the store) leaves after the others have
    stopped their watchdogs, so none of them mistakes its exit for a failure."""
    try:
        if ctx.rank != 0:
            ctx.store.set(ctx.key(f"done/{ctx.rank}"), "1")
        elif ctx.launch.world > 1:
            ctx.store.wait([ctx.key(f"done/{r}") for r in range(1, ctx.launch.world)], datetime.timedelta(seconds=10))
    except Exception:  # a rank that left already: the run is complete either way
        pass


def _report_once(ctx: Ctx, message: str) -> None:
    """An error every rank sees alike: rank 0 prints it; the others wait (a few seconds at most)
    until it has, so that the launcher does not stop rank 0 before it could say why, then leave."""
    key = ctx.key("reported")
    try:
        if ctx.rank == 0:
            print(format_exit(0, message), file=sys.stderr, flush=True)
            ctx.store.set(key, "1")
            # Stay until the others have read it: rank 0 may host the store they are reading.
            acks = [ctx.key(f"ack/{r}") for r in range(1, ctx.launch.world)]
            ctx.store.wait(acks, datetime.timedelta(seconds=10))
        else:
            ctx.store.wait([key], datetime.timedelta(seconds=10))
            ctx.store.set(ctx.key(f"ack/{ctx.rank}"), "1")
    except Exception:  # a rank is gone or slow: leave anyway, rank 0 has or will have said why
        pass
    sys.stdout.flush()
    os._exit(ERROR_EXIT)
