"""Single-process executor: run a schedule of a captured model on logical devices and streams.

:func:`compile` (exported lazily as ``hios.compile``) returns a :class:`HiosModule` whose
``forward`` equals ``model(*inputs)``.  Steps:

  1. Capture the model (:func:`hios.frontend.capture.capture`) and check that the plan or
     schedule matches it: same operators, same edges, same input shape.
  2. Cut the schedule into per-stream segments (:func:`hios.program.segmenting.stream_program`,
     torch-free); logical devices that map to one physical device share its memory.
  3. Build each segment (:func:`hios.frontend.segments.build_segment`), place its weights on its
     own device once (shared weights are placed once per device, never moved back), in
     channels_last layout when asked (default with ``kernels="inductor"``), apply the levers
     (:mod:`hios.program.levers`: convolution + bias + ReLU as one cuDNN kernel, branches writing
     into their slice of a concatenation), and compile it with
     ``torch.compile`` (Inductor, no CUDA graphs of its own) for ``kernels="inductor"``; with
     ``kernels="eager"`` the segment's ATen operators run as they are.
  4. Issue the program.  CUDA: every (logical device, stream) has a stream of its physical device
     (the first logical device's stream 0 is the caller's current stream); all side streams fork
     from the current stream and join it at the end, cross-stream dependencies are CUDA events
     and values that cross physical devices are copied peer to peer, non-blocking, on per-link copy
     streams.  Nothing synchronises the host inside a forward pass.  CPU: each stream is a thread
     and each event a ``threading.Event``, so the dependency semantics are the same.
  5. ``mode="graph"`` (default on CUDA): after warm-up passes (which also compile), the whole
     multi-stream program is captured into one CUDA graph (side streams forked and joined by
     events inside the capture); a forward copies the inputs into static buffers and replays it.
     When capture is impossible (several physical devices, a capture error) the module falls back
     to stream mode with a warning saying why (``fallback_reason``).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.utils._pytree as pytree
from torch import nn

from ...errors import HiosError
from ...graph import Graph
from ...formats import read_json
from ...cost.probe import cuda_device_count
from ...cost.timing import precision
from ...frontend.model_checks import as_inputs
from ...options import RunOptions
from ...schedule import PLAN_FORMAT, Schedule, schedule_from_json
from ...program.devices import logical_devices, used_gpus
from ...program.levers import Levers
from ...program.segmenting import ExecProgram, stream_program

__all__ = ["HiosModule", "SLICE", "Seg", "check_plan_graph", "check_plan_inputs", "compile", "place_module",
           "resolve_schedule"]

SLICE = "__slice__:"   # prefix of the values that hold a concatenation slice (concat in place)
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# --------------------------------------------------------------------------- plan checks
def check_plan_graph(plan_graph: Graph, graph: Graph) -> None:
    """The plan's graph must have exactly the model's operators and edges."""
    have = set(graph.index)
    for n in plan_graph.names:
        if n not in have:
            raise HiosError(f"plan does not match the model: it has operator {n!r} that the model does not have")
    planned = set(plan_graph.index)
    for n in graph.names:
        if n not in planned:
            raise HiosError(f"plan does not match the model: it misses the model's operator {n!r}")
    pe = {(e.src, e.dst) for e in plan_graph.edges}
    me = {(e.src, e.dst) for e in graph.edges}
    for a, b in sorted(pe - me):
        raise HiosError(f"plan does not match the model: its edge {a!r} -> {b!r} is not in the model")
    for a, b in sorted(me - pe):
        raise HiosError(f"plan does not match the model: the model's edge {a!r} -> {b!r} is missing from it")


def check_plan_inputs(model_info: dict, plan_graph: Graph | None, inputs: tuple) -> None:
    """The example inputs must have the element type and shape the plan was made for."""
    from ...plan import check_plan_dtype
    check_plan_dtype(model_info, [t.dtype for t in inputs if isinstance(t, torch.Tensor)])
    shapes = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
    want = None
    if plan_graph is not None:
        ins = plan_graph.meta.get("inputs")
        if isinstance(ins, list) and all(isinstance(i, dict) and i.get("shape") is not None for i in ins):
            want = [tuple(i["shape"]) for i in ins]
    if want is not None:
        if want != shapes:
            raise HiosError(f"plan was made for input shape(s) {want}, the model's inputs are {shapes}")
        return
    size, batch = model_info.get("image_size"), model_info.get("batch")
    if shapes and len(shapes[0]) == 4:
        b, _, h, w = shapes[0]
        if (size is not None and (h, w) != (size, size)) or (batch is not None and b != batch):
            raise HiosError(f"plan was made for batch {batch} at {size}x{size} px, the model's input is "
                            f"{list(shapes[0])}")


def resolve_schedule(plan_or_schedule, graph: Graph, inputs: tuple) -> tuple[Schedule, Any]:
    """``(schedule, plan or None)`` from a Plan, a Schedule, a path to either, or None (sequential)."""
    from ...plan import Plan
    obj = plan_or_schedule
    if obj is None:
        return Schedule.from_indices(graph, [[[i] for i in graph.topo]], "sequential"), None
    if isinstance(obj, (str, Path)):
        d = read_json(obj, "plan")
        if not (isinstance(d, dict) and d.get("format") == PLAN_FORMAT):
            return schedule_from_json(d, str(obj), graph), None
        obj = Plan.from_dict(d, str(obj))
    if isinstance(obj, Schedule):
        return obj, None
    if isinstance(obj, Plan):
        check_plan_graph(obj.graph, graph)
        check_plan_inputs(obj.model, obj.graph, inputs)
        return obj.schedule, obj
    raise HiosError(f"expected a plan, a schedule or a path, got {type(obj).__name__}")


# --------------------------------------------------------------------------- weight placement
def _join_all(threads) -> None:
    """Join every thread, waiting through further interrupts (each finishes its current segment)."""
    for t in threads:
        while t.is_alive():
            try:
                t.join()
            except BaseException:  # a second Ctrl-C: keep waiting, the first one is being handled
                continue


def _clone_tree(m: nn.Module) -> nn.Module:
    """A copy of the module tree sharing tensors but not containers, so placing weights on a device
    never changes the captured model or another segment."""
    c = copy.copy(m)
    c.__dict__ = dict(m.__dict__)
    c._parameters = dict(m._parameters)
    c._buffers = dict(m._buffers)
    c._modules = {k: (_clone_tree(v) if v is not None else None) for k, v in m._modules.items()}
    return c


def _moved(t: torch.Tensor, device: torch.device, channels_last: bool, cache: dict) -> torch.Tensor:
    key = (id(t), str(device))
    hit = cache.get(key)
    if hit is not None:
        return hit[1]
    fmt = torch.channels_last if channels_last and t.dim() == 4 else torch.preserve_format
    v = t.detach().to(device=device, memory_format=fmt)
    if isinstance(t, nn.Parameter):
        v = nn.Parameter(v, requires_grad=False)
    cache[key] = (t, v)  # keep t alive so its id is not reused
    return v


def place_module(module: nn.Module, device: torch.device, channels_last: bool, cache: dict) -> nn.Module:
    """``module`` with every parameter, buffer and tensor attribute on ``device`` (placed once per
    device: ``cache`` maps original tensors to their placed copies)."""
    root = _clone_tree(module)
    for m in root.modules():
        for k, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[k] = _moved(p, device, channels_last, cache)
        for k, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[k] = _moved(b, device, channels_last, cache)
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor):
                m.__dict__[k] = _moved(v, device, channels_last, cache)
    return root


# --------------------------------------------------------------------------- segments
@dataclass
class Seg:
    """One segment placed on its device, ready to run (shared with the distributed backend)."""

    step: Any                    # SegmentStep
    fn: Any                      # callable(*inputs) -> tuple
    eager: nn.Module             # the placed, uncompiled module (fallback)
    inputs: list[str]
    outputs: list[str]
    mem: str = ""                # physical device name (memory space)
    skip: bool = False           # runs nothing (a concatenation done in place by its producers)
    fused: int = 0               # convolution epilogues fused into one kernel

    @classmethod
    def build(cls, step, segment, device, kernels: str, channels_last: bool, cache: dict, mem: str = "",
              fuse: bool = False, write: Sequence[str] = (), read: str | None = None) -> "Seg":
        """Place ``segment`` (a :class:`hios.frontend.segments.Segment`) on ``device`` and, with
        ``kernels="inductor"``, wrap it in ``torch.compile`` (Inductor, no CUDA graphs of its own).
        ``fuse``: convolution epilogues as one kernel (:mod:`hios.runtime.local.fuse_epilogue`).
        ``write``: outputs copied into concatenation slices, read from ``SLICE + name`` inputs;
        ``read``: a concatenation node read as an input (its buffer) instead of computed."""
        placed = place_module(segment.module, device, channels_last, cache)
        placed.eval()
        fused = 0
        if fuse:
            from .fuse_epilogue import fuse_conv_epilogues
            fused = fuse_conv_epilogues(placed, device, channels_last=channels_last, label=f"operator {step.ops[0]}")
        module: nn.Module = placed
        inputs, outputs = list(segment.inputs), list(segment.outputs)
        if read is not None:
            from .concat_inplace import read_buffer
            inputs = read_buffer(placed, read, inputs)
        if write:
            from .concat_inplace import write_into
            module = write_into(placed, tuple(outputs.index(n) for n in write))
            inputs += [SLICE + n for n in write]
            outputs = [n for n in outputs if n not in write]
        fn = module
        if kernels == "inductor":
            from ...cost import compile_pool
            fn = torch.compile(module, backend="inductor", fullgraph=True, dynamic=False,
                               options=dict(compile_pool.INDUCTOR_OPTIONS))
        return cls(step, fn, module, inputs, outputs, mem, fused=fused)

    def run(self, env: dict, first: bool, on_fallback) -> None:
        """Run on the values in ``env`` and store the outputs there.  On the first call a segment
        Inductor cannot compile falls back to its eager module; ``on_fallback(message)`` says so."""
        if self.skip:
            return
        args = [env[n] for n in self.inputs]
        if first and self.fn is not self.eager:
            try:
                outs = self.fn(*args)
            except _OOM:
                raise
            except Exception as e:
                on_fallback(f"torch.compile failed for segment {self.step.ops[0]}..{self.step.ops[-1]} "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                            "running it with eager kernels")
                self.fn = self.eager
                outs = self.fn(*args)
        else:
            outs = self.fn(*args)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        env.update(zip(self.outputs, outs))


# --------------------------------------------------------------------------- the module


@contextlib.contextmanager
def cudnn_benchmark():
    """``torch.backends.cudnn.benchmark`` on inside the block, as it was after (the lever
    ``cudnn_benchmark``: the warm-up times cuDNN's algorithms, the capture records the fastest)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class HiosModule(nn.Module):
    """A model compiled for a schedule; call it like the model.  Attributes: ``program``
    (the :class:`ExecProgram`), ``devices``, ``kernels``, ``mode`` (after any fallback),
    ``fallback_reason``, ``captured``, ``levers`` (:class:`hios.program.levers.Levers`: fused
    convolution epilogues, concatenation in place, stream priorities; default ``Levers()`` with
    ``priority=True`` meaning ``Levers(priority="stream0")``).  A program cut with
    ``stream_program(..., merge=True)`` is the ``merge_segments`` lever."""

    def __init__(self, captured, program: ExecProgram, devices: list[str], kernels: str, mode: str,
                 channels_last: bool, clone_outputs: bool, warmup: int, progress: bool, priority: bool = False,
                 levers: Levers | None = None):
        super().__init__()
        self.tf32: bool | None = None  # the precision stream-mode calls run in (None: torch's flags as
        #                                they are; hios.run_plan sets the run's)
        self.levers = levers if levers is not None else Levers(priority="stream0" if priority else "none")
        self.priority = self.levers.priority != "none"
        self.captured = captured
        self.program = program
        self.devices = devices
        self.kernels = kernels
        self.mode = mode
        self.channels_last = channels_last
        self.clone_outputs = clone_outputs
        self.fallback_reason: str | None = None
        self._bar = None
        self.is_cuda = devices[0].startswith("cuda")
        self._graph = None
        self._static_in: list[torch.Tensor] | None = None
        self._static_out = None
        self._in_meta = [(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else None
                         for t in captured.example_inputs]
        try:
            self._build()
            if self.is_cuda:
                self._make_streams()
            tune = self.is_cuda and mode == "graph" and self.levers.cudnn_benchmark
            with cudnn_benchmark() if tune else contextlib.nullcontext():
                self._warm(warmup, progress)
                if mode == "graph":
                    self._capture()
        except _OOM as e:
            raise HiosError(f"out of memory on {self._main_device()} while preparing the plan: "
                            f"{str(e).splitlines()[0]}") from None

    # -- construction --------------------------------------------------------
    def _main_device(self) -> torch.device:
        return torch.device(self.devices[0])

    def _build(self) -> None:
        from ...frontend.segments import build_segment, output_names
        cap = self.captured
        prog = self.program
        node_op: dict[str, str] = {}
        for op in cap.graph.ops:
            for n in op.meta.get("nodes", []):
                node_op[n] = op.name
        self._node_op = node_op
        cache: dict = {}
        self._cats = []
        write: dict[int, list[str]] = {}
        if self.levers.concat_inplace:
            from .concat_inplace import plan_inplace_cats
            self._cats = plan_inplace_cats(cap, prog, self.devices)
            nodes = {cat.node for cat in self._cats}
            for cat in self._cats:
                for part in cat.parts:
                    if part.node not in nodes:  # a concatenation in place inside another is a view of it
                        write.setdefault(prog.segment_of[part.op], []).append(part.node)
        self._cat_ops = {cat.node: cat.op for cat in self._cats}
        read = {prog.segment_of[cat.op]: cat.node for cat in self._cats}
        skip = {sid for sid, node in read.items() if prog.steps[sid].ops == (self._cat_ops[node],)
                and cap.graph[self._cat_ops[node]].meta["nodes"] == [node]}
        self._segs: list[Seg | None] = []
        for st in prog.steps:
            if st.kind != "segment":
                self._segs.append(None)
                continue
            kernels = "eager" if not self.levers.eager.isdisjoint(st.ops) else self.kernels
            seg = Seg.build(st, build_segment(cap, list(st.ops)), torch.device(self.devices[st.device]),
                            kernels, self.channels_last, cache, self.devices[st.device],
                            fuse=self.levers.fuses(st.ops), write=write.get(st.id, ()),
                            read=None if st.id in skip else read.get(st.id))
            seg.skip = st.id in skip
            self._segs.append(seg)
        # Values each transfer moves: the producer's nodes read by segments in the destination memory.
        self._xfer_nodes: dict[int, list[str]] = {}
        for st in prog.steps:
            if st.kind == "transfer":
                dst_mem = self.devices[st.dst]
                names = set()
                for s in self._segs:
                    if s is not None and s.mem == dst_mem:
                        names.update(n for n in s.inputs if node_op.get(n) == st.op)
                self._xfer_nodes[st.id] = sorted(names)
        # Memory spaces (physical devices) in order of first use; every one gets the model inputs.
        self._mems = list(dict.fromkeys(self.devices))
        self._out_spec = output_names(cap)
        leaves = pytree.tree_leaves(self._out_spec)
        self._out_leaves = [n for n in leaves if isinstance(n, str)]
        self._input_names = list(cap.input_names)

    def _make_streams(self) -> None:
        prog = self.program
        self._events = [torch.cuda.Event() for _ in range(prog.events)]
        self._streams: dict[tuple[int, int], torch.cuda.Stream | None] = {}
        first_logical: dict[str, int] = {}
        for d, name in enumerate(self.devices):
            first_logical.setdefault(name, d)
        prio = self._stream_priorities()
        for d in range(prog.devices):
            for s in range(prog.streams[d]):
                dev = torch.device(self.devices[d])
                if prio and prog.streams[d] > 1:
                    self._streams[(d, s)] = torch.cuda.Stream(dev, priority=prio[(d, s)])
                else:
                    main = s == 0 and first_logical[self.devices[d]] == d
                    self._streams[(d, s)] = None if main else torch.cuda.Stream(dev)
        self._copy: dict[tuple[str, str], tuple[torch.cuda.Stream, torch.cuda.Stream]] = {}
        for st in prog.steps:
            if st.kind == "transfer":
                a, b = self.devices[st.src], self.devices[st.dst]
                if (a, b) not in self._copy:
                    self._copy[(a, b)] = (torch.cuda.Stream(torch.device(a)), torch.cuda.Stream(torch.device(b)))

    def _stream_priorities(self) -> dict[tuple[int, int], int]:
        """(device, stream) -> CUDA priority for the ``priority`` lever (empty: default priorities)."""
        prog, how = self.program, self.levers.priority
        if how == "none":
            return {}
        high = torch.cuda.Stream.priority_range()[1] if hasattr(torch.cuda.Stream, "priority_range") else -1
        high = max(min(high, 0), -1)
        if how == "stream0":  # stream 0 (the costliest branches) first
            return {(d, s): high if s == 0 else 0 for d in range(prog.devices) for s in range(prog.streams[d])}
        from ...program.priority import stream_priorities
        return stream_priorities(prog, self.levers.critical, high=high, low=0)

    # -- issuing ---------------------------------------------------------------
    def _alloc_cats(self, env: dict[str, dict[str, torch.Tensor]]) -> None:
        """Concatenation buffers (concat in place) and the slice each producer writes into."""
        from .concat_inplace import dtype_of
        for cat in reversed(self._cats):  # outer concatenations (later in the graph) first
            mem = self.devices[self.program.steps[self.program.segment_of[cat.op]].device]
            fmt = torch.channels_last if self.channels_last and len(cat.shape) == 4 else torch.contiguous_format
            buf = env[mem].get(SLICE + cat.node)  # the slice of an outer concatenation, if any
            if buf is None:
                buf = torch.empty(cat.shape, dtype=dtype_of(cat.dtype), device=mem, memory_format=fmt)
            env[mem][cat.node] = buf
            for part in cat.parts:
                view = buf.narrow(cat.dim, part.start, part.stop - part.start)
                env[mem][SLICE + part.node] = view
                env[mem][part.node] = view

    def _prepare_inputs(self, inputs: tuple) -> dict[str, dict[str, torch.Tensor]]:
        """Inputs on every memory space, in the layout the segments expect."""
        env: dict[str, dict[str, torch.Tensor]] = {m: {} for m in self._mems}
        for name, x in zip(self._input_names, inputs):
            for m in self._mems:
                if isinstance(x, torch.Tensor):
                    fmt = torch.channels_last if self.channels_last and x.dim() == 4 else torch.preserve_format
                    v = x.to(device=m, memory_format=fmt, non_blocking=True)
                else:
                    v = x
                env[m][name] = v
        return env

    def _run_segment(self, seg: Seg, env: dict[str, torch.Tensor], first: bool) -> None:
        if first and self._bar is not None:
            self._bar.update(1)
        seg.run(env, first, lambda msg: warnings.warn(f"hios: {msg}", stacklevel=4))

    def _issue_cuda(self, env: dict[str, dict[str, torch.Tensor]], first: bool = False):
        prog = self.program
        ev = self._events
        mains = {m: torch.cuda.current_stream(torch.device(m)) for m in self._mems}
        main0 = mains[self._mems[0]]
        # Fork: every other stream (side, copy, other devices' current) waits for the caller's stream.
        fork0 = torch.cuda.Event()
        fork0.record(main0)
        side: list[tuple[str, torch.cuda.Stream]] = []
        for m in self._mems[1:]:
            mains[m].wait_event(fork0)
        forks = {}
        for m in self._mems:
            e = fork0 if m == self._mems[0] else torch.cuda.Event()
            if m != self._mems[0]:
                e.record(mains[m])
            forks[m] = e
        for (d, s), stream in self._streams.items():
            if stream is not None:
                stream.wait_event(forks[self.devices[d]])
                side.append((self.devices[d], stream))
        for (a, b), (sa, sb) in self._copy.items():
            sa.wait_event(forks[a])
            sb.wait_event(forks[b])
            side += [(a, sa), (b, sb)]
        for st in prog.steps:
            if st.kind == "segment":
                seg = self._segs[st.id]
                stream = self._streams[(st.device, st.stream)]
                if stream is None:
                    stream = mains[seg.mem]
                with torch.cuda.stream(stream):
                    for e in st.waits:
                        stream.wait_event(ev[e])
                    self._run_segment(seg, env[seg.mem], first)
                    if st.record is not None:
                        ev[st.record].record(stream)
            else:
                a, b = self.devices[st.src], self.devices[st.dst]
                sa, sb = self._copy[(a, b)]
                sa.wait_event(ev[st.wait])
                with torch.cuda.stream(sa), torch.cuda.stream(sb):
                    for n in self._xfer_nodes[st.id]:
                        env[b][n] = env[a][n].to(torch.device(b), non_blocking=True)
                    ev[st.record].record(sb)
        # Join: the caller's streams wait for everything.
        for m, stream in side:
            mains[m].wait_stream(stream)
        for m in self._mems[1:]:
            main0.wait_stream(mains[m])

    def _gather(self, env: dict[str, dict[str, torch.Tensor]]):
        from ...frontend.segments import assemble_output
        main = self._mems[0]
        out_env = dict(env[main])
        for n in self._out_leaves:
            if n in out_env:
                continue
            for m in self._mems[1:]:
                if n in env[m]:
                    out_env[n] = env[m][n].to(torch.device(main), non_blocking=True)
                    break
            else:
                raise HiosError(f"model output {n!r} was not produced by any segment")
        return assemble_output(self.captured, out_env)

    def _issue_cpu(self, env: dict[str, dict[str, torch.Tensor]], first: bool = False):
        prog = self.program
        per_stream: dict[tuple[int, int], list] = {}
        for st in prog.steps:
            per_stream.setdefault((st.device, st.stream), []).append(st)
        if len(per_stream) == 1 or self.kernels == "inductor":
            # One stream, or compiled kernels (Dynamo is not thread-safe): issue order is a valid order.
            for st in prog.steps:
                seg = self._segs[st.id]
                self._run_segment(seg, env[seg.mem], first)
            return
        events = [threading.Event() for _ in range(prog.events)]
        failed: list[BaseException] = []

        def worker(steps):
            try:
                for st in steps:
                    for e in st.waits:
                        while not events[e].wait(0.5):
                            if failed:
                                return
                    if failed:
                        return
                    seg = self._segs[st.id]
                    self._run_segment(seg, env[seg.mem], first)
                    if st.record is not None:
                        events[st.record].set()
            except BaseException as exc:  # reported by the issuing thread
                failed.append(exc)

        # Not daemons: the interpreter joins them before it exits, so none is left inside torch while
        # it tears down (an abort, "terminate called without an active exception", exit 134).
        threads = [threading.Thread(target=worker, args=(steps,)) for steps in per_stream.values()]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except BaseException as exc:  # Ctrl-C/SIGTERM: the streams stop after their current segment
            failed.append(exc)
            _join_all(threads)
            raise
        if failed:
            raise failed[0]

    def _issue_env(self, inputs: tuple, first: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Issue the program once (no CUDA graph); every value it made, per memory space."""
        env = self._prepare_inputs(inputs)
        self._alloc_cats(env)
        with torch.no_grad():
            if self.is_cuda:
                self._issue_cuda(env, first)
            else:
                self._issue_cpu(env, first)
        return env

    def _issue(self, inputs: tuple, first: bool = False):
        env = self._issue_env(inputs, first)
        with torch.no_grad():
            return self._gather(env)

    def issue(self, *inputs):
        """Run once issuing every segment on its stream, without replaying the CUDA graph: what
        ``forward`` does in stream mode, also for a module built in graph mode."""
        self._check_inputs(inputs)
        try:
            return self._issue(inputs)
        except _OOM as e:
            raise HiosError(f"out of memory on {self._main_device()} while running the plan: "
                            f"{str(e).splitlines()[0]}") from None

    def values(self, *inputs) -> dict[str, dict[str, torch.Tensor]]:
        """Run the program once in stream mode (also in graph mode: the graph is not replayed) and
        return every value it made, per memory space and node name (synchronised): what
        :mod:`hios.runtime.local.verify` inspects when the output is wrong."""
        self._check_inputs(inputs)
        env = self._issue_env(inputs)
        if self.is_cuda:
            for m in self._mems:
                torch.cuda.synchronize(torch.device(m))
        return env

    @property
    def segments(self) -> list[Seg]:
        """The built segments in program order (transfers left out)."""
        return [s for s in self._segs if s is not None]

    # -- warm-up and capture ------------------------------------------------------
    def _example(self) -> tuple:
        return tuple(t.to(self._main_device()) if isinstance(t, torch.Tensor) else t
                     for t in self.captured.example_inputs)

    def _warm(self, warmup: int, progress: bool) -> None:
        from tqdm import tqdm
        self._bar = tqdm(total=len(self.program.segments), desc=f"compiling segments ({self.kernels})",
                         file=sys.stderr, leave=False, disable=not progress or self.kernels == "eager")
        try:
            self._warm_passes(warmup)
        finally:
            self._bar.close()
            self._bar = None

    def _warm_passes(self, warmup: int) -> None:
        x = self._example()
        if not self.is_cuda:
            for k in range(max(1, warmup)):
                self._issue(x, first=k == 0)
            return
        dev = self._main_device()
        with torch.cuda.device(dev):
            s = torch.cuda.Stream(dev)
            s.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(s):
                for k in range(max(1, warmup)):
                    self._issue(x, first=k == 0)
            torch.cuda.current_stream(dev).wait_stream(s)
            for m in self._mems:
                torch.cuda.synchronize(torch.device(m))

    def _capture(self) -> None:
        if len(self._mems) > 1:
            self._fallback(f"the plan spans {len(self._mems)} physical devices ({', '.join(self._mems)}) and "
                           "one CUDA graph is captured per physical device only")
            return
        dev = self._main_device()
        static = []
        for t in self.captured.example_inputs:
            if isinstance(t, torch.Tensor):
                fmt = torch.channels_last if self.channels_last and t.dim() == 4 else torch.contiguous_format
                static.append(torch.empty_like(t, device=dev, memory_format=fmt).copy_(t))
            else:
                static.append(t)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.device(dev):
                torch.cuda.synchronize(dev)
                with torch.cuda.graph(graph):
                    out = self._issue(tuple(static))
                torch.cuda.synchronize(dev)
        except _OOM:
            raise
        except Exception as e:
            torch.cuda.synchronize(dev)
            self._fallback(f"CUDA-graph capture failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return
        self._graph = graph
        self._static_in = static
        self._static_out = out

    def _fallback(self, why: str) -> None:
        warnings.warn(f"hios: {why}; running in stream mode", stacklevel=4)
        self.fallback_reason = why
        self.mode = "stream"

    # -- calling -------------------------------------------------------------
    def _check_inputs(self, inputs: tuple) -> None:
        if len(inputs) != len(self._in_meta):
            raise HiosError(f"the compiled model takes {len(self._in_meta)} input(s), got {len(inputs)}")
        for k, (x, meta) in enumerate(zip(inputs, self._in_meta)):
            if meta is None:
                continue
            if not isinstance(x, torch.Tensor) or (tuple(x.shape), x.dtype) != meta:
                got = (tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__
                raise HiosError(f"input {k} is {got}; the model was compiled for {meta}")

    def replay(self) -> None:
        """Replay the captured graph on the current static inputs (graph mode only; for timing)."""
        if self._graph is None:
            raise HiosError("replay() needs graph mode")
        self._graph.replay()

    def forward(self, *inputs):
        self._check_inputs(inputs)
        try:
            if self._graph is not None:
                for buf, x in zip(self._static_in, inputs):
                    if isinstance(buf, torch.Tensor):
                        buf.copy_(x, non_blocking=True)
                self._graph.replay()
                out = self._static_out
                if self.clone_outputs:
                    out = pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)
                return out
            if self.tf32 is None:
                return self._issue(inputs)
            with precision(self.tf32):
                return self._issue(inputs)
        except _OOM as e:
            raise HiosError(f"out of memory on {self._main_device()} while running the plan: "
                            f"{str(e).splitlines()[0]}") from None


# --------------------------------------------------------------------------- entry point
def compile(model: nn.Module, example_inputs, plan_or_schedule=None, devices=None, *,
            options: RunOptions | None = None, streams: dict[str, int] | None = None, clone_outputs: bool = True,
            warmup: int = 2, name: str | None = None, captured=None, progress: bool = False,
            **knobs) -> HiosModule:
    """Compile ``model`` for a plan (or schedule, or a path to either; None: one stream on one
    device) on ``devices`` (``"cuda:0,cuda:0"`` or a list; default one device per plan GPU).

    ``options`` (:class:`hios.options.RunOptions`) says how it runs; or give its fields as keywords
    (``kernels``, ``mode``, ``sync``, ``channels_last``, ``tf32``, ``levers``) with ``devices``.
    ``streams``: an explicit operator -> stream map (the naive baseline of the benchmark).
    ``clone_outputs``: False returns the CUDA graph's static output tensors, overwritten
    by the next call.  ``captured``: reuse a capture of the same model and inputs.

    Examples
    --------
    >>> import torch, hios
    >>> from hios.testing.dist_models import random_dag
    >>> model, x = random_dag(image_size=16), torch.randn(1, 3, 16, 16)
    >>> fast = hios.compile(model, x, None, "cpu")      # one stream, eager kernels
    >>> torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
    True
    """
    from ...frontend.capture import capture
    if options is None:
        options = RunOptions(devices=devices, **knobs)
    elif devices is not None or knobs:
        raise HiosError("give run options either as options=RunOptions(...) or as keywords, not both")
    inputs = as_inputs(example_inputs)
    if captured is None:
        captured = capture(model, inputs, name)
    graph = captured.graph
    sched, _plan = resolve_schedule(plan_or_schedule, graph, tuple(captured.example_inputs))
    devs = logical_devices(options.devices, max(sched.gpus, 1), used_gpus(sched.stages), cuda_device_count())
    options = options.resolve(devs)
    if _plan is not None:  # a plan runs with any settings; its predictions hold for its profile's only
        from ...cost.feedback import profile_mismatch, runtime_settings
        from ...cost.timing import precision_state
        why = profile_mismatch(_plan.graph, runtime_settings(options.kernels, options.channels_last,
                                                             precision_state(), devs[0].split(":")[0]))
        if why:
            warnings.warn(f"hios: {why}; the plan runs as asked, but its predicted times do not apply to this run",
                          stacklevel=2)
    levers = _with_critical(options.levers, _plan)
    if _plan is not None and _plan.graph.total_work() > 0:  # streams placed costliest first, as planned
        graph = graph.with_costs({op.name: _plan.graph[op.name].cost for op in graph.ops})
    program = stream_program(graph, sched.padded(len(devs)), memory=devs, sync=options.sync, streams=streams,
                             merge=levers.merge_segments)
    return HiosModule(captured, program, devs, options.kernels, options.mode, options.channels_last, clone_outputs,
                      warmup, progress, levers=levers)


def _with_critical(levers: Levers, plan) -> Levers:
    """``priority="critical"`` needs the critical operators: those of the plan's costed graph."""
    if levers.priority != "critical" or levers.critical:
        return levers
    if plan is None or plan.graph.total_work() <= 0:
        raise HiosError("priority 'critical' needs a costed plan (the critical path is found from its costs)")
    from ...program.priority import critical_operators
    return replace(levers, critical=critical_operators(plan.graph))
