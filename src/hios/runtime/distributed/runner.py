"""The rank program runner of the distributed runtime: one inference of this rank's part.

:class:`RankRunner` walks the rank's program (:mod:`.program`) in its global order.
Steps of one call:
  1. Rank 0 copies the inputs into its static input buffers.
  2. CPU (:meth:`RankRunner._issue_cpu`): a segment first waits on the host for the receives of the
     values it reads, then runs; sends and receives are posted where the program puts them.
     CUDA (:meth:`RankRunner._issue_cuda`): side streams fork from the current stream; segments
     run on their streams, waiting for their local events and (on the GPU) for their receives;
     sends and receives go on a communication stream, a send waiting for its producer's event;
     everything joins the current stream at the end.  Nothing waits on the host.
  3. Rank 0 returns the output (the others None).

On CUDA the whole part can be captured as one CUDA graph (:meth:`RankRunner.capture`);
:func:`capture_vote` makes every rank keep its graph only if every rank could capture one.
"""

from __future__ import annotations

from typing import Any

from .launch import Ctx, PeerError
from .program import INPUT, DistProgram
from .wire import Layouts, post_recvs, post_sends

__all__ = ["RankRunner", "capture_vote", "graph_support"]


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

    def __init__(self, ctx: Ctx, program: DistProgram, streams: int, events: int, segs: dict,
                 input_names: list[str], out_spec, channels_last: bool):
        import torch
        self.torch, self.ctx, self.rank, self.device = torch, ctx, ctx.rank, ctx.device
        self.prog = program.ranks[ctx.rank]
        self.segs, self.input_names, self.out_spec = segs, input_names, out_spec
        self.channels_last = channels_last
        self.is_cuda = self.device.type == "cuda"
        self.layouts = Layouts(ctx)
        self.graph = None
        self.static_in: list = []
        self.static_out = None
        self._first = True
        self._src_of = {a.batch.index: a.batch.src for a in self.prog.actions if a.kind == "recv"}
        self._send_peers = sorted({t.dst for t in self.prog.sends})
        if self.is_cuda:
            self.streams = [None] + [torch.cuda.Stream(self.device) for _ in range(max(streams, 1) - 1)]
            self.comm = torch.cuda.Stream(self.device)
            self.events = [torch.cuda.Event() for _ in range(events)]
            self.send_events = {a.step: torch.cuda.Event() for a in self.prog.actions
                                if a.kind == "segment" and a.feeds}

    # -- one inference -------------------------------------------------------------------------
    def _issue(self, inputs: list) -> Any:
        env: dict[str, Any] = dict(zip(self.input_names, inputs)) if self.rank == 0 else {}
        (self._issue_cuda if self.is_cuda else self._issue_cpu)(env)
        self._first = False
        if self.rank != 0:
            return None
        import torch.utils._pytree as pytree
        return pytree.tree_map(lambda leaf: env[leaf] if isinstance(leaf, str) else leaf, self.out_spec)

    def _run_segment(self, step: int, env: dict) -> None:
        self.segs[step].run(env, self._first, self.ctx.notes.append)

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

    def _wait_batch(self, recvs: dict, b: int) -> None:
        src = self._src_of[b]
        self._wait_cpu(recvs.pop(b, ()), f"values from rank {src}", [src])

    def _issue_cpu(self, env) -> None:
        sends: list = []
        recvs: dict[int, list] = {}
        for a in self.prog.actions:
            if a.kind == "segment":
                for b in a.recv_waits:
                    self._wait_batch(recvs, b)
                self._run_segment(a.step, env)
            elif a.kind == "send":
                sends.extend(post_sends(a.batch, env, self.layouts))
            else:
                recvs[a.batch.index] = post_recvs(a.batch, self.rank, env, self.layouts, self.device)
        for b in list(recvs):
            self._wait_batch(recvs, b)
        self._wait_cpu(sends, "its sends to be received", self._send_peers)

    def _issue_cuda(self, env) -> None:
        torch = self.torch
        main = torch.cuda.current_stream(self.device)
        fork = torch.cuda.Event()
        fork.record(main)
        side = [s for s in self.streams if s is not None] + [self.comm]
        for s in side:
            s.wait_event(fork)
        sends: list = []
        recvs: dict[int, list] = {}
        waited: set[tuple[int, int]] = set()
        for a in self.prog.actions:
            if a.kind == "segment":
                self._segment_cuda(a, env, recvs, waited, main)
            elif a.kind == "send":
                with torch.cuda.stream(self.comm):
                    if a.batch.producer != INPUT:
                        self.comm.wait_event(self.send_events[a.batch.producer])
                    sends.extend(post_sends(a.batch, env, self.layouts))
            else:
                with torch.cuda.stream(self.comm):
                    recvs[a.batch.index] = post_recvs(a.batch, self.rank, env, self.layouts, self.device)
        for s in side:
            main.wait_stream(s)
        for w in sends + [w for ws in recvs.values() for w in ws]:
            w.wait()

    def _segment_cuda(self, a, env, recvs, waited, main) -> None:
        st = self.segs[a.step].step
        stream = self.streams[st.stream] or main
        with self.torch.cuda.stream(stream):
            for e in a.local_waits:
                stream.wait_event(self.events[e])
            for b in a.recv_waits:
                if (b, st.stream) not in waited:  # once per stream: the wait orders the stream
                    waited.add((b, st.stream))
                    for w in recvs[b]:
                        w.wait()
            self._run_segment(a.step, env)
            if st.record is not None:
                self.events[st.record].record(stream)
            if a.feeds:
                self.send_events[a.step].record(stream)

    # -- public --------------------------------------------------------------------------------
    def prepare(self, inputs: list) -> None:
        """Rank 0's static inputs, on its device (channels_last for images when asked)."""
        torch = self.torch
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        self.static_in = [x.to(self.device, memory_format=fmt if x.dim() == 4 else torch.preserve_format)
                          if isinstance(x, torch.Tensor) else x for x in inputs]

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
        self.graph, self.static_out = g, out
        return None

    def drop_graph(self) -> None:
        if self.graph is not None:
            self.graph.reset()
        self.graph, self.static_out = None, None

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
        with torch.no_grad():
            return self._issue(self.static_in)

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


def capture_vote(ctx: Ctx, runner: RankRunner) -> str | None:
    """Every rank tries to capture its part; all keep their graphs only if all could.  Returns
    the first rank's reason why not (None: every rank runs its CUDA graph)."""
    why = runner.capture()
    votes = ctx.gather("graph", why or "", "every rank's CUDA-graph capture")
    fails = [v for _, v in sorted(votes.items()) if v]
    if fails:
        runner.drop_graph()
        return fails[0]
    return None
