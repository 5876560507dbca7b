"""Fault detection of the distributed runtime: heartbeats through the rendezvous store.

Every rank runs one :class:`Watchdog` thread with its own store connection.  Steps, every
``interval`` seconds:
  1. Publish this rank's heartbeat under ``<prefix>hb/<rank>``: a counter, the index and name of
     the phase the main thread is in, and whether it is working or waiting for other ranks.
  2. Read the other ranks' heartbeats; remember, on this rank's own clock, when each counter last
     changed (clocks of different nodes are never compared).
  3. If the main thread has waited for other ranks longer than ``timeout`` seconds, name the
     culprits (ranks never seen, ranks whose heartbeat stopped, ranks behind in an earlier
     phase, else the ranks that were waited for), print one line to stderr and end the process
     with :data:`EXIT_CODE`.  A rank that is alive and still working in a start-up phase
     (planning, building) is allowed ``setup_timeout`` instead, as planning can take a while.

A dead rank stops its heartbeat; a hung rank keeps its heartbeat but never leaves its phase; in
both cases every other rank ends up waiting, and leaves within ``timeout`` seconds.  Exceptions
raised by the communication itself (e.g. gloo's "connection closed by peer") go through
:meth:`Watchdog.blame`, which names the rank that stopped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from ...errors import option, render

__all__ = ["EXIT_CODE", "PeerState", "Watchdog", "format_exit"]

EXIT_CODE = 3


@dataclass
class PeerState:
    counter: int = -1
    phase: int = -1
    state: str = ""
    name: str = ""
    changed: float = 0.0  # local monotonic time the counter last changed
    seen: bool = False


def format_exit(rank: int, message: str) -> str:
    return f"hios run: error: rank {rank}: {message}"


class Watchdog:
    """Heartbeat publisher and failure detector (one thread per rank)."""

    def __init__(self, store_factory: Callable[[], object], rank: int, world: int, timeout: float,
                 prefix: str = "hios/", interval: float | None = None, setup_timeout: float | None = None,
                 on_abort: Callable[[str], None] | None = None, flag: Callable[[str], str] | None = None):
        self.rank = rank
        self.flag = flag  # how messages name options (hios.errors.render); None: by field name
        self.world = world
        self.timeout = float(timeout)
        self.interval = interval if interval is not None else min(0.5, max(0.05, self.timeout / 20))
        self.setup_timeout = setup_timeout if setup_timeout is not None else max(10 * self.timeout, 600.0)
        self.prefix = prefix
        self._store_factory = store_factory
        self._store = None
        self._lock = threading.Lock()
        self._phase = (0, "setup:start")  # (index, name); names starting "setup:" are start-up phases
        self._state = "work"
        self._wait_what = ""
        self._wait_since = 0.0
        self._counter = 0
        self._peers = {r: PeerState() for r in range(world) if r != rank}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()  # publish now (phase change)
        self._thread: threading.Thread | None = None
        self._on_abort = on_abort or self._default_abort

    # -- main-thread API ----------------------------------------------------------------------
    def start(self) -> "Watchdog":
        self._store = self._store_factory()
        self._publish()
        self._thread = threading.Thread(target=self._loop, name="hios-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self, done: bool = True) -> None:
        if done:
            with self._lock:
                self._state = "done"
            try:
                self._publish()
            except Exception:  # the store may be gone at the very end; nothing left to tell
                pass
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 1)

    def phase(self, index: int, name: str) -> None:
        """Enter phase ``name`` (indices grow along the run; "setup:..." names are start-up phases)."""
        with self._lock:
            self._phase = (index, name)
            self._state = "work"
        self._wake.set()

    @contextmanager
    def waiting(self, what: str):
        """Mark the main thread as waiting for other ranks for the duration of the block."""
        with self._lock:
            self._state = "wait"
            self._wait_what = what
            self._wait_since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._state = "work"

    def blame(self, wait: float | None = None) -> str:
        """Name the failed rank(s) after a communication error; waits up to ``wait`` seconds for a
        dead rank's heartbeat to go stale."""
        limit = self._stale_after()
        deadline = time.monotonic() + (wait if wait is not None else limit + 2 * self.interval)
        while True:
            culprits = self._culprits(time.monotonic(), strict=True)
            if culprits or time.monotonic() >= deadline:
                return culprits or "a peer rank failed (no rank could be singled out)"
            time.sleep(self.interval)

    # -- thread --------------------------------------------------------------------------------
    def _stale_after(self) -> float:
        return min(self.timeout / 2, max(2.0, 6 * self.interval))

    def _publish(self) -> None:
        with self._lock:
            self._counter += 1
            idx, name = self._phase
            val = f"{self._counter} {idx} {self._state} {name}"
        self._store.set(f"{self.prefix}hb/{self.rank}", val)

    def _read_peers(self, now: float) -> None:
        for r, p in self._peers.items():
            key = f"{self.prefix}hb/{r}"
            if not self._store.check([key]):
                continue
            raw = self._store.get(key).decode()
            parts = raw.split(" ", 3)
            counter = int(parts[0])
            if counter != p.counter:
                p.counter = counter
                p.changed = now
            p.phase = int(parts[1])
            p.state = parts[2]
            p.name = parts[3] if len(parts) > 3 else ""
            p.seen = True

    def _culprits(self, now: float, strict: bool = False) -> str:
        """Ranks to blame, as one phrase; ``strict``: only ranks never seen or gone silent ('' if none)."""
        stale = self._stale_after()
        with self._lock:
            my_idx = self._phase[0]
        never = [r for r, p in self._peers.items() if not p.seen]
        dead = [(r, p) for r, p in self._peers.items() if p.seen and p.state != "done" and now - p.changed > stale]
        finished = [r for r, p in self._peers.items() if p.seen and p.state == "done"]
        behind = [(r, p) for r, p in self._peers.items()
                  if p.seen and p.state == "work" and now - p.changed <= stale and p.phase < my_idx]
        parts = []
        if never and now - self._started > stale:
            parts.append(", ".join(f"rank {r}" for r in never) + " never started (no heartbeat)")
        for r, p in dead:
            parts.append(f"rank {r} stopped responding (no heartbeat for {now - p.changed:.1f} s, "
                         f"last seen in phase '{p.name}')")
        if parts or strict:
            return "; ".join(parts)
        for r, p in behind:
            parts.append(f"rank {r} is stuck in phase '{p.name}'")
        if parts:
            return "; ".join(parts)
        if finished:
            return ", ".join(f"rank {r}" for r in finished) + " already finished"
        busy = [(r, p) for r, p in self._peers.items() if p.seen and p.state == "work"]
        if busy:
            return "; ".join(f"rank {r} is stuck in phase '{p.name}'" for r, p in busy)
        return "every rank is waiting (mismatched programs?)"

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                self._publish()
                self._read_peers(now)
            except Exception as e:  # the store went away: its host (launcher or rank 0) is gone
                if self._stop.is_set():
                    return
                self._abort(f"lost the rendezvous store ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "the launcher or rank 0, which hosts it, has stopped")
                return
            with self._lock:
                waiting = self._state == "wait"
                since = self._wait_since
                what = self._wait_what
                _, my_phase = self._phase
            if not waiting or now - since <= self.timeout:
                continue
            if now - since <= self.setup_timeout and self._peers_busy_in_setup(now):
                continue
            self._abort(f"gave up after waiting {now - since:.1f} s ({option('timeout', f'{self.timeout:g}')}) for "
                        f"{what} in phase '{my_phase}': {self._culprits(now)}")
            return

    def _peers_busy_in_setup(self, now: float) -> bool:
        """True when some peer is alive and still working in a start-up phase (planning, building)."""
        stale = self._stale_after()
        return any(p.seen and p.state == "work" and now - p.changed <= stale and p.name.startswith("setup:")
                   for p in self._peers.values())

    def _abort(self, message: str) -> None:
        self._on_abort(format_exit(self.rank, render(message, self.flag)))

    @staticmethod
    def _default_abort(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        os._exit(EXIT_CODE)
