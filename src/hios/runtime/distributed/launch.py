"""Launch and rendezvous of the distributed runtime: how a rank starts, talks to the others
through the store, and leaves.

Steps, in the order a rank meets them:
  1. :func:`launch_env`: torchrun's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) as a
     :class:`Launch`; a one-line error when the rank was not started by torchrun.
  2. :func:`connect`: the rendezvous store (``env://``), a second store client for the watchdog
     (:mod:`.watchdog`), the watchdog started; all held by a :class:`Ctx`, whose
     :meth:`Ctx.phase` tells the watchdog (and, on rank 0, the user) what the rank is doing and
     whose :meth:`Ctx.gather` / :meth:`Ctx.wait_get` exchange strings through the store.
  3. :func:`setup_device`: cpu with gloo, or ``cuda:LOCAL_RANK`` with NCCL.
  4. :func:`init_process_group`: join the process group (its timeout longer than the
     watchdog's, so the watchdog speaks first) and all-reduce one number.
  5. Leaving: after a complete run :func:`close` (rank 0, which may host the store, leaves after
     the others); an error every rank sees alike is said once, by rank 0 (:func:`report_once`);
     any other error makes the rank :func:`die` with one line naming it (:func:`fail`).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from ...errors import HiosError, option, raw_message, render
from .watchdog import EXIT_CODE, Watchdog, format_exit

__all__ = ["DEFAULT_TIMEOUT", "ERROR_EXIT", "PHASES", "Ctx", "DistError", "Launch", "PeerError", "close", "connect",
           "die", "fail", "init_process_group", "inject_fault", "launch_env", "parse_fault", "quiet",
           "report_once", "setup_device"]

DEFAULT_TIMEOUT = 60.0
ERROR_EXIT = 2
PHASES = ["setup:start", "setup:plan", "setup:build", "setup:check", "setup:init", "setup:segments",
          "setup:warmup", "setup:capture", "run", "finish"]
_PHASE_LOG = {"setup:plan": "getting the plan", "setup:build": "capturing the model",
              "setup:init": "joining the process group", "setup:segments": "building this rank's segments",
              "setup:warmup": "warming up", "setup:capture": "capturing each rank's part as a CUDA graph",
              "run": "timing"}


class DistError(HiosError):
    """A failure of the distributed run, already phrased for the user."""

    quiet = False  # True: every rank sees it alike, only rank 0 prints it


class PeerError(DistError):
    """Communication with a peer rank broke (it died or closed its connections)."""


def quiet(e: DistError) -> DistError:
    """Mark an error every rank sees alike: only rank 0 prints it."""
    e.quiet = True
    return e


# --------------------------------------------------------------------------- step 1: environment
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
        raise HiosError(f"{option('backend', 'distributed')} must be started by torchrun (no {missing[0]} in the environment): "
                        "torchrun --nproc-per-node N -m hios run --backend distributed ...")
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", env["RANK"]))
        port = int(env["MASTER_PORT"])
    except ValueError:
        raise HiosError("torchrun's RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be integers") from None
    return Launch(rank, world, local, env["MASTER_ADDR"], port, int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0))


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    """``HIOS_DIST_FAULT`` (tests only): ``exit:R`` or ``hang:R``, or None."""
    if not spec:
        return None
    kind, _, r = spec.partition(":")
    if kind not in ("exit", "hang") or not r.strip().isdigit():
        raise HiosError(f"HIOS_DIST_FAULT={spec!r}: expected exit:RANK or hang:RANK")
    return kind, int(r)


def inject_fault(rank: int) -> None:
    """Leave (exit code 0) or hang here when ``HIOS_DIST_FAULT`` names this rank."""
    fault = parse_fault(os.environ.get("HIOS_DIST_FAULT"))
    if fault is None or fault[1] != rank:
        return
    if fault[0] == "exit":
        os._exit(0)
    while True:
        time.sleep(1)


# --------------------------------------------------------------------------- step 2: the context
@dataclass
class Ctx:
    """What every step of a rank uses: its launch, the store, the watchdog, its device."""

    launch: Launch
    store: Any
    watchdog: Watchdog
    prefix: str
    device: Any = None
    backend: str = ""
    pg: bool = False
    verbose: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world(self) -> int:
        return self.launch.world

    def phase(self, name: str) -> None:
        self.watchdog.phase(PHASES.index(name), name)
        if self.verbose and self.rank == 0 and name in _PHASE_LOG:
            print(f"hios run: {_PHASE_LOG[name]}...", file=sys.stderr, flush=True)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _wait(self, keys: list[str], what: str, publish: tuple[str, str] | None = None) -> None:
        try:
            if publish is not None:
                self.store.set(*publish)
            with self.watchdog.waiting(what):
                self.store.wait(keys, datetime.timedelta(seconds=self.watchdog.setup_timeout + 60))
        except RuntimeError as e:  # c10d's store errors derive from RuntimeError
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DistError(f"lost the rendezvous store while waiting for {what} ({first[:200]}); "
                            "the launcher or rank 0, which hosts it, has stopped") from None

    def wait_get(self, name: str, what: str) -> str:
        """The string another rank set under ``name``, once it has."""
        self._wait([self.key(name)], what)
        return self.store.get(self.key(name)).decode()

    def gather(self, name: str, value: str, what: str) -> dict[int, str]:
        """All-gather a string through the store (every rank sets its own key, then reads all)."""
        keys = [self.key(f"{name}/{r}") for r in range(self.world)]
        self._wait(keys, what, publish=(keys[self.rank], value))
        return {r: self.store.get(k).decode() for r, k in enumerate(keys)}


def connect(launch: Launch, timeout: float, verbose: bool, flag: Callable[[str], str] | None = None) -> Ctx:
    """Join the rendezvous store and start the watchdog on a client of its own."""
    import torch.distributed as dist
    limit = datetime.timedelta(seconds=max(timeout, 30))
    store, _, _ = next(dist.rendezvous("env://", rank=launch.rank, world_size=launch.world, timeout=limit))
    prefix = f"hios/{launch.restart}/"
    client = lambda: dist.TCPStore(launch.master_addr, launch.master_port, is_master=False,  # noqa: E731
                                   timeout=limit, wait_for_workers=False)
    watchdog = Watchdog(client, launch.rank, launch.world, timeout, prefix=prefix, flag=flag)
    ctx = Ctx(launch, store, watchdog, prefix, verbose=verbose)
    watchdog.start()
    return ctx


# --------------------------------------------------------------------------- steps 3-4: device, group
def setup_device(ctx: Ctx, want: str | None) -> None:
    """cpu and gloo (``want="cpu"``, or no CUDA), else ``cuda:LOCAL_RANK`` and NCCL."""
    import torch
    if want == "cpu" or (want is None and not torch.cuda.is_available()):
        ctx.device, ctx.backend = torch.device("cpu"), "gloo"
        return
    if not torch.cuda.is_available():
        raise HiosError(f"{option('device', 'cuda')} asked for, but CUDA is not available (use {option('device', 'cpu')})")
    n = torch.cuda.device_count()
    if ctx.launch.local_rank >= n:
        raise HiosError(f"local rank {ctx.launch.local_rank} has no GPU: this node has {n}; start at most "
                        f"{n} rank(s) per node")
    torch.cuda.set_device(ctx.launch.local_rank)
    ctx.device, ctx.backend = torch.device("cuda", ctx.launch.local_rank), "nccl"


def init_process_group(ctx: Ctx) -> None:
    import torch
    import torch.distributed as dist
    kw = {"device_id": ctx.device} if ctx.backend == "nccl" else {}
    # The process group's own timeout is longer than ours, so the watchdog speaks first.
    dist.init_process_group(ctx.backend, store=dist.PrefixStore(ctx.key("pg"), ctx.store), rank=ctx.rank,
                            world_size=ctx.world, timeout=datetime.timedelta(seconds=ctx.watchdog.setup_timeout + 60),
                            **kw)
    ctx.pg = True
    t = torch.zeros(1, device=ctx.device)
    with ctx.watchdog.waiting("every rank to join the process group"):
        dist.all_reduce(t)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)


# --------------------------------------------------------------------------- step 5: leaving
def close(ctx: Ctx) -> None:
    """After a complete run: stop the watchdog, leave together, tear the process group down."""
    ctx.watchdog.stop(done=True)
    _leave_together(ctx)
    try:
        import torch.distributed as dist
        if ctx.pg:
            dist.destroy_process_group()
    except Exception:  # teardown errors after a complete run change nothing of the result
        pass


def _leave_together(ctx: Ctx) -> None:
    """Rank 0 (which may host the store) leaves after the others have stopped their watchdogs,
    so none of them mistakes its exit for a failure."""
    try:
        if ctx.rank != 0:
            ctx.store.set(ctx.key(f"done/{ctx.rank}"), "1")
        elif ctx.world > 1:
            ctx.store.wait([ctx.key(f"done/{r}") for r in range(1, ctx.world)], datetime.timedelta(seconds=10))
    except Exception:  # a rank that left already: the run is complete either way
        pass


def die(rank: int, message: str, code: int = ERROR_EXIT) -> NoReturn:
    """Print one line and leave at once (no process-group teardown that could wait for dead peers)."""
    print(format_exit(rank, message), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def report_once(ctx: Ctx, message: str) -> NoReturn:
    """An error every rank sees alike: rank 0 prints it; the others wait (a few seconds at most)
    until it has, so that the launcher does not stop rank 0 before it could say why, then leave."""
    key = ctx.key("reported")
    try:
        if ctx.rank == 0:
            print(format_exit(0, message), file=sys.stderr, flush=True)
            ctx.store.set(key, "1")
            # Stay until the others have read it: rank 0 may host the store they are reading.
            acks = [ctx.key(f"ack/{r}") for r in range(1, ctx.world)]
            ctx.store.wait(acks, datetime.timedelta(seconds=10))
        else:
            ctx.store.wait([key], datetime.timedelta(seconds=10))
            ctx.store.set(ctx.key(f"ack/{ctx.rank}"), "1")
    except Exception:  # a rank is gone or slow: leave anyway, rank 0 has or will have said why
        pass
    sys.stdout.flush()
    os._exit(ERROR_EXIT)


def fail(ctx: Ctx | None, rank: int, e: Exception, flag: Callable[[str], str] | None = None) -> NoReturn:
    """Leave after ``e``, with one line that names the problem (or the peer that caused it); the
    options it names are shown by ``flag`` (None: by field name, :func:`hios.errors.render`)."""
    if isinstance(e, HiosError):
        text = render(raw_message(e), flag)
        if isinstance(e, PeerError):
            die(rank, text, EXIT_CODE)
        if isinstance(e, DistError) and e.quiet and ctx is not None:
            report_once(ctx, text)
        die(rank, text)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if ctx is not None and ctx.pg:  # a failed peer shows up as a communication error: name the rank
        die(rank, f"{ctx.watchdog.blame()} ({type(e).__name__}: {first[:200]})", EXIT_CODE)
    traceback.print_exc()
    die(rank, f"{type(e).__name__}: {first[:300]}")
