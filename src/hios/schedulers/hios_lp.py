"""HIOS-LP: inter-GPU mapping by repeated longest paths, then the intra-GPU sliding window.

Steps:
  1. Rank every operator by latest start time (descending bottom level, operator cost plus
     mean transfer time along the longest path to a sink; ties by topological position).  This
     order respects every dependency, and each GPU always runs its operators in it, so no
     partial or final schedule can deadlock.
  2. Among the operators not yet mapped, find the longest path, weighting operators by their
     cost and edges by their (mean) transfer time.  Paths start at any operator whose
     predecessors are all mapped (or a source) and end anywhere, so several sources and sinks
     need nothing special; edges to operators mapped earlier are ignored by the search.  Ties go
     to the path ending first in topological order.  The search is incremental: after a path
     is mapped only its unmapped successors, and from them whatever changes, are recomputed
     (in topological order, stopping where a distance does not change); the next path ends at
     the top of a max-heap keyed by (-distance, topological position), stale entries skipped.
     Once the fast placement of step 3 has taken over (``exact=False``), the recomputation
     stops :data:`DIST_DEPTH` levels below the path (scaled by :func:`.timing_engine.decayed`, at
     least 2): deeper distances stay upper bounds, and the paths found are long, not always
     the longest.
  3. Try the whole path on each GPU: insert it into that GPU's rank order and evaluate the
     latency of the partial schedule (the operators mapped so far plus the path; inputs from
     unmapped operators are ignored, as ``Simulator.run(stages, complete=False)`` does,
     including the transfers from operators mapped earlier on other GPUs).  Keep the GPU of
     lowest latency; ties go to the lowest GPU index.  The evaluation is incremental: only the
     operators whose finish time changes are re-timed, in rank order from the path on (times
     of the others are reused), which gives the same latency as re-timing the whole partial
     schedule.  GPUs are tried in the order of a lower bound of their latency (the longest
     path through the path's operators, from kept schedule tails that never exceed the true
     ones), and a GPU whose bound, or a re-timed finish plus its kept tail, already exceeds
     the best latency so far is dropped: the choice is the same, usually after one re-timing.
     This is O(n) per path: with ``exact=False`` (the default) it is used until
     :data:`EXACT_BUDGET` re-timings per operator are spent (:func:`.timing_engine.exact_budget`:
     small graphs are placed exactly, large ones spend a shrinking constant), then the fast
     rule of :class:`_FastPlacement` takes over: latency taken as
     ``max(latency, longest path through the path)`` from kept finish times and schedule tails,
     O(path x degree x log n) per GPU.  ``exact=True`` keeps the exact evaluation throughout.
  4. Mark the path mapped and repeat from 2 until every operator is mapped.
  5. Refine the mapping with at most ``refine`` passes of single-operator moves that never
     raise the latency (:mod:`.refine`).  ``refine=0`` skips steps 5 and 6 and gives the plain
     longest-path mapping, each GPU in rank order.  With ``exact=False`` the exact refinement
     runs until :data:`EXACT_REFINE_BUDGET` re-timings per operator are spent (the whole of it
     on small graphs), then the fast refinement (:func:`.refine.refine_mapping_fast`, O(n x
     GPUs x degree) per pass) continues from its result.
  6. Order each GPU's operators either by rank or in the order a list scheduler starts them
     (earliest start first, ties by rank; :mod:`.list_order`), whichever the simulator finds
     faster (rank order on a tie).  Both orders are dependency-consistent.
  7. Unless ``intra=False``, apply the intra-GPU sliding window (:mod:`.intra_gpu`) with
     ``window`` and ``streams``, walking each GPU in the order of step 6 (its fast mode unless
     ``exact=True``); keep its result only if the simulator confirms it is not slower.
  8. Simulate the result; if it is slower than running every operator in sequence on GPU 0,
     return that sequential schedule instead (so HIOS-LP is never worse than sequential).

Link model: the searches of steps 2-7 time transfers without link serialization (the fast
evaluator); every choice between whole schedules in steps 6-8 is made by the simulator under the
machine's link model, ``serialize_links`` included, so the answer is never worse than sequential
under the model it is evaluated with.  GPUs: on a uniform machine with more GPUs than the graph
can use at once (:func:`.timing_engine.usable_gpus`), the search runs on that many and the result is
padded with empty GPUs, so the work does not grow with unusable GPUs.

``exact=True`` gives today's (issue 22) results bit for bit, in O(n^2) time; the default fast mode
is checked against it on quality by ``benchmarks/placement_quality.py``.  Its exact budgets and
caps are set by :data:`.timing_engine.BUDGET_OPS`: graphs up to about that many operators are
scheduled nearly as the exact mode does, larger ones in near-linear time
(``benchmarks/scheduler_scale.py``).

``meta`` records the number of paths, the latency after the mapping (``mapping_latency``), after
refinement (``refined_latency``) and after ordering (``ordered_latency``), the moves made, the
order chosen (``order``: "rank" or "list"), and ``fallback`` when step 8 applied.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from math import nextafter

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import Simulator
from .timing_engine import INF, FastTimer, decayed, exact_budget, finish_in_order, lst_ranks, out_rows, search_machine
from .intra_gpu import intra_options
from .mapping_steps import DEFAULT_REFINE, check_exact, check_refine, finish

__all__ = ["EXACT_BUDGET", "DIST_DEPTH", "longest_path_mapping", "hios_lp"]

#: The fast mode places paths exactly until this many re-timed operators per operator of the
#: graph have been spent (:func:`.timing_engine.exact_budget`), then by the fast rule.
EXACT_BUDGET = 64
#: The fast placement updates the longest-path distances this many levels below a mapped path
#: (at :data:`.timing_engine.BUDGET_OPS` operators; scaled by :func:`.timing_engine.decayed`, at least 2;
#: None: all the way, as the exact mode).
DIST_DEPTH = 64


def longest_path_mapping(timer: FastTimer, rank: list[int], exact: bool = True) -> tuple[list[int], int]:
    """Steps 2-4: the GPU of every operator, and the number of paths mapped; ``exact=False``
    places paths by the fast rule (:class:`_FastPlacement`)."""
    g = timer.graph
    n = timer.n
    cost = timer.cost
    in_w = timer.in_weight
    succs = g.succs
    pos = g.position
    gpu_of = [-1] * n
    dist = [0.0] * n
    parent = [-1] * n
    place = _Placement(timer, rank, gpu_of)
    budget = INF if exact else exact_budget(EXACT_BUDGET, n)
    depth = None  # exact distances until the fast placement takes over
    heap: list[tuple[float, int, int]] = []  # (-distance, topological position, operator), lazily deleted
    for v in g.topo:
        _path_step(v, in_w, gpu_of, dist, parent, cost)
        heap.append((-dist[v], pos[v], v))
    heapq.heapify(heap)
    paths = 0
    left = n
    while left:
        # Step 2: the longest path over unmapped operators ends at the heap's top.
        while True:
            d, _, best_v = heapq.heappop(heap)
            if gpu_of[best_v] < 0 and -d == dist[best_v]:
                break
        path = []
        v = best_v
        while v >= 0:
            path.append(v)
            v = parent[v]
        path.sort(key=rank.__getitem__)
        paths += 1
        # Steps 3-4: place the path on its best GPU.
        if place.retimed > budget:
            place = _FastPlacement.take_over(place)
            budget = INF
            depth = None if DIST_DEPTH is None else decayed(DIST_DEPTH, n, 2)
        place.place(path)
        left -= len(path)
        # Distances change only downstream of the path, in topological order, until nothing changes
        # (the fast mode stops DIST_DEPTH levels below the path: deeper distances stay upper bounds).
        dirty = sorted({pos[w] for v in path for w in succs[v] if gpu_of[w] < 0})
        queued = set(dirty)
        topo = g.topo
        if depth is None or depth >= n:
            while dirty:
                v = topo[heapq.heappop(dirty)]
                old = dist[v]
                _path_step(v, in_w, gpu_of, dist, parent, cost)
                if dist[v] != old:
                    heapq.heappush(heap, (-dist[v], pos[v], v))
                    for w in succs[v]:
                        if gpu_of[w] < 0 and pos[w] not in queued:
                            queued.add(pos[w])
                            heapq.heappush(dirty, pos[w])
        else:
            level = dict.fromkeys(dirty, 1)
            while dirty:
                p = heapq.heappop(dirty)
                v = topo[p]
                old = dist[v]
                _path_step(v, in_w, gpu_of, dist, parent, cost)
                if dist[v] != old:
                    heapq.heappush(heap, (-dist[v], p, v))
                    lv = level[p] + 1
                    if lv <= depth:
                        for w in succs[v]:
                            pw = pos[w]
                            if gpu_of[w] < 0 and pw not in queued:
                                queued.add(pw)
                                level[pw] = lv
                                heapq.heappush(dirty, pw)
    return gpu_of, paths


def _path_step(v: int, in_w, gpu_of: list[int], dist: list[float], parent: list[int], cost: list[float]) -> None:
    """Longest path over unmapped operators ending at ``v`` (its length and the operator before
    ``v`` on it: the first unmapped producer, in input order, of greatest distance)."""
    d0 = 0.0
    par = -1
    for u, w in in_w[v]:
        if gpu_of[u] < 0:
            x = dist[u] + w
            if x > d0 or par < 0 and x == d0:
                d0, par = x, u
    dist[v] = d0 + cost[v]
    parent[v] = par


class _Placement:
    """Step 3 for the exact mode: the partial schedule (each GPU in rank order, finish times kept)
    and the latency of adding a path to one GPU, re-timing only the operators whose finish time
    changes (in rank order, from the path on), which gives the same times as re-timing every
    operator ranked after the path.

    Lower bounds spare re-timings without changing any choice.  Every mapped operator keeps a
    schedule tail (``stail``: the longest path from its finish to the end, through the next
    operator on its GPU and its consumers) that is never above its true tail: adding a path only
    adds operators and dependencies, so tails never shrink, and :meth:`_raise_tails` keeps them
    exact.  The GPUs are tried in the order of the longest path through the path's operators
    (:meth:`_bounds`, from the exact kept finish times and those tails, a lower bound of the
    latency); once a GPU holds the best latency so far, another is skipped when that bound
    already exceeds it, and a re-timing is abandoned as soon as a new finish plus the operator's
    kept tail does; both beyond rounding (a relative 1e-12), so only GPUs that cannot win are
    dropped.  A GPU of lower index than the best one is re-timed up to an equal latency (it wins
    the tie).  (``CAP`` and ``GROW``: the fast placement's bounded updates.)"""

    CAP = 1000
    GROW = 1.5

    def __init__(self, timer: FastTimer, rank: list[int], gpu_of: list[int]):
        self.timer = timer
        self.rank = rank
        self.gpu_of = gpu_of
        self.end = [0.0] * timer.n
        self.gpu_r: list[list[int]] = [[] for _ in range(timer.gpus)]  # ranks of each GPU's operators
        self.gpu_ops: list[list[int]] = [[] for _ in range(timer.gpus)]
        self.prv = [-1] * timer.n  # the operator before each mapped one on its GPU (-1: none)
        self.nxt = [-1] * timer.n  # the operator after it
        self.lat = 0.0
        self.retimed = 0
        self.by_rank = [0] * timer.n  # operator of each rank
        for v, r in enumerate(rank):
            self.by_rank[r] = v
        self.outs = out_rows(timer)
        # pin[v] = [(u, transfer ms)] for the mapped producers u of a mapped v, pout[u] = [(v, ms)] for the
        # mapped consumers of a mapped u (mapped operators keep their GPU: fixed transfer times)
        self.pin: list[list[tuple[int, float]]] = [[] for _ in range(timer.n)]
        self.pout: list[list[tuple[int, float]]] = [[] for _ in range(timer.n)]
        self.stail = [0.0] * timer.n
        self.cap = decayed(self.CAP, timer.n)
        self.count = 0  # operators mapped
        self.synced = 0  # operators mapped at the last recomputation of the tails

    def place(self, path: list[int]) -> int:
        """Map ``path`` (sorted by rank) to the GPU of lowest latency (ties: lowest index)."""
        gpu_of = self.gpu_of
        bounds = self._bounds(path)
        bounds.sort()  # most promising first: the others are then cut early
        best_g, best_lat, best_new = -1, 0.0, None
        for bound, gi in bounds:
            if best_g >= 0:
                edge = best_lat + best_lat * 1e-12  # beyond rounding of the bounds' sums
                if bound > edge:
                    break  # a path through the path's operators is already longer, here and after
                if gi < best_g:
                    cut = nextafter(best_lat, INF)  # a tie wins: re-timing stops above best_lat
                    if self.lat > best_lat:
                        continue
                else:
                    cut = best_lat
                    if self.lat >= best_lat:
                        continue
            else:
                cut = edge = INF
            for v in path:
                gpu_of[v] = gi
            new = self._retime(path, gi, cut, edge)
            if new is not None:
                lat = max(self.lat, max(new.values()))
                if best_g < 0 or lat < best_lat or lat == best_lat and gi < best_g:
                    best_g, best_lat, best_new = gi, lat, new
        for v in path:
            gpu_of[v] = best_g
        self._insert(path, best_g, best_new)
        self.lat = best_lat
        self._raise_tails(path)
        return best_g

    def _bounds(self, path: list[int]) -> list[tuple[float, int]]:
        """``(through, gpu)`` for every GPU: :meth:`_through` with no limit."""
        prep = self._path_edges(path)
        return [(self._through(prep, gi, INF), gi) for gi in range(self.timer.gpus)]

    def _path_edges(self, path: list[int]) -> list[tuple]:
        """What :meth:`_through` reads of each operator of ``path`` (sorted by rank, not yet
        mapped), the same for every GPU: ``(rank, cost, [(producer's kept finish, its transfer
        row to each GPU)], [(transfer rows, consumer's GPU, its cost, its kept tail)])`` over its
        mapped producers and consumers.  The producers of a path operator on the path run before
        it on the same GPU (transfer 0), so only mapped producers can delay it."""
        gpu_of = self.gpu_of
        rank = self.rank
        ins = self.timer.ins
        cost = self.timer.cost
        outs = self.outs
        end = self.end
        stail = self.stail
        prep = []
        for v in path:
            arr = [(end[u], row[gu]) for u, row in ins[v] if (gu := gpu_of[u]) >= 0]
            out = [(row, gw, cost[w], stail[w]) for w, row in outs[v] if (gw := gpu_of[w]) >= 0]
            prep.append((rank[v], cost[v], arr, out))
        return prep

    def _through(self, prep: list[tuple], gi: int, limit: float) -> float:
        """Longest path through the operators of a path (:meth:`_path_edges`) in the partial
        schedule with the path on GPU ``gi``, from the kept finish times of their producers and
        the kept tails of their successors, the mapped operators between two path operators
        pushed back; a lower bound of that schedule's latency when the kept times and tails are
        not above the true ones.  Stops once above ``limit`` (then any value above it)."""
        cost = self.timer.cost
        end = self.end
        stail = self.stail
        r_list = self.gpu_r[gi]
        o_list = self.gpu_ops[gi]
        nops = len(o_list)
        through = 0.0
        chain_t = 0.0
        kprev = -1
        last = len(prep) - 1
        for i, (r, c, arr, out_rows_v) in enumerate(prep):
            k = bisect_left(r_list, r)
            if kprev < 0:
                chain_t = end[o_list[k - 1]] if k else 0.0
            else:
                # mapped operators between the previous path operator and this one: pushed back
                for m in o_list[kprev:k]:
                    tm = chain_t + cost[m]
                    em = end[m]
                    if em > tm:
                        tm = em
                    x = tm + stail[m]
                    if x > through:
                        through = x
                    chain_t = tm
                if through > limit:
                    break
            kprev = k
            t = chain_t
            for e, row in arr:
                a = e + row[gi]
                if a > t:
                    t = a
            t += c
            chain_t = t
            out = 0.0
            if i == last and k < nops:
                nb = o_list[k]
                out = cost[nb] + stail[nb]
            for row, gw, cw, sw in out_rows_v:
                x = row[gi][gw] + cw + sw
                if x > out:
                    out = x
            if t + out > through:
                through = t + out
            if through > limit:
                break
        return through

    def _insert(self, path: list[int], gpu: int, new: dict[int, float]) -> None:
        """Add the path (mapped to ``gpu``) to that GPU's rank order; keep the ``new`` finish times."""
        rank = self.rank
        r_list = self.gpu_r[gpu]
        o_list = self.gpu_ops[gpu]
        prv = self.prv
        nxt = self.nxt
        for v in path:
            r = rank[v]
            k = bisect_left(r_list, r)
            r_list.insert(k, r)
            o_list.insert(k, v)
            a = o_list[k - 1] if k else -1
            b = o_list[k + 1] if k + 1 < len(o_list) else -1
            prv[v], nxt[v] = a, b
            if a >= 0:
                nxt[a] = v
            if b >= 0:
                prv[b] = v
        end = self.end
        for v, t in new.items():
            end[v] = t
        self._link_inputs(path, gpu, self.pin, self.pout, None)

    def _link_inputs(self, path: list[int], gpu: int, pin: list, pout: list, added: list | None) -> None:
        """Add ``path`` (mapped to ``gpu`` in ``gpu_of``) to ``pin`` and ``pout``; with ``added``,
        the path's own lists are set aside (they are empty while unmapped) and the consumers whose
        ``pin`` grew are listed, for :meth:`_unlink_inputs`."""
        gpu_of = self.gpu_of
        on_path = set(path)
        for v in path:
            iv = pin[v]
            for u, row in self.timer.ins[v]:
                gu = gpu_of[u]
                if gu >= 0:
                    ms = row[gu][gpu]
                    iv.append((u, ms))
                    if added is None:
                        pout[u].append((v, ms))
            ov = pout[v]
            for w, row in self.outs[v]:
                gw = gpu_of[w]
                if gw >= 0 and w not in on_path:
                    ms = row[gpu][gw]
                    pin[w].append((v, ms))
                    ov.append((w, ms))
                    if added is not None:
                        added.append(w)

    def _unlink_inputs(self, path: list[int], added: list[int]) -> None:
        """Undo :meth:`_link_inputs` with ``added``."""
        pin = self.pin
        for w in reversed(added):
            pin[w].pop()
        pout = self.pout
        for v in path:
            pin[v] = []
            pout[v] = []

    def _retime(self, path: list[int], gi: int, cut: float, tail_cut: float = INF,
                cap: int = -1) -> dict[int, float] | None:
        """New finish times of the operators that change when ``path`` runs on GPU ``gi``; None as
        soon as one reaches ``cut`` or one plus its kept tail exceeds ``tail_cut``; with
        ``cap >= 0``, those of the first ``cap`` operators re-timed after the path (the rest left
        stale)."""
        cost = self.timer.cost
        pin = self.pin
        pout = self.pout
        rank = self.rank
        by_rank = self.by_rank
        end = self.end
        stail = self.stail
        prv = self.prv
        nxt = self.nxt
        # neighbours on GPU gi with the path inserted, where they differ from prv / nxt
        path_r = [rank[v] for v in path]
        npath = len(path)
        r_list = self.gpu_r[gi]
        o_list = self.gpu_ops[gi]
        nops = len(o_list)
        ks = [bisect_left(r_list, r) for r in path_r]
        p_over: dict[int, int] = {}
        n_over: dict[int, int] = {}
        for i, v in enumerate(path):
            k = ks[i]
            if i and ks[i - 1] == k:
                a = path[i - 1]
            else:
                a = o_list[k - 1] if k else -1
                if a >= 0:
                    n_over[a] = v
            p_over[v] = a
            if i + 1 < npath and ks[i + 1] == k:
                b = path[i + 1]
            else:
                b = o_list[k] if k < nops else -1
                if b >= 0:
                    p_over[b] = v
            n_over[v] = b
        # written into prv / nxt while re-timing, the old links restored at the end
        old_p = [(x, prv[x]) for x in p_over]
        old_n = [(x, nxt[x]) for x in n_over]
        for x, a in p_over.items():
            prv[x] = a
        for x, b in n_over.items():
            nxt[x] = b
        new: dict[int, float] = {}
        # new finish times are written into ``end`` while re-timing (reads stay plain list reads)
        # and the old ones restored at the end
        old: dict[int, float] = {}
        heap = list(path_r)  # ranks (one operator each), already sorted: a heap
        pop = heapq.heappop
        push = heapq.heappush
        queued = set(path)  # every operator queued once: those popped are the re-timed ones
        qadd = queued.add
        fresh = frozenset(path)
        limited = cap >= 0
        added: list[int] = []
        # the path's inputs and consumers as if mapped to gi (undone below; pout's order does not
        # matter: the heap pops by rank)
        self._link_inputs(path, gi, pin, pout, added)
        try:
            while heap:
                x = by_rank[pop(heap)]
                p = prv[x]  # the operator before x on its GPU, in rank order (the path included on gi)
                t = 0.0 if p < 0 else end[p]
                for u, ms in pin[x]:
                    a = end[u] + ms
                    if a > t:
                        t = a
                t += cost[x]
                if t >= cut or t + stail[x] > tail_cut:
                    return None
                if limited and x not in fresh:
                    if cap == 0:
                        break
                    cap -= 1
                if t == end[x] and x not in fresh:
                    continue
                old[x] = end[x]
                end[x] = new[x] = t
                for w, _ms in pout[x]:
                    if w not in queued:
                        qadd(w)
                        push(heap, rank[w])
                nx = nxt[x]
                if nx >= 0 and nx not in queued:
                    qadd(nx)
                    push(heap, rank[nx])
        finally:
            self.retimed += len(queued) - len(heap)
            for x, t in old.items():
                end[x] = t
            for x, a in old_p:
                prv[x] = a
            for x, b in old_n:
                nxt[x] = b
            self._unlink_inputs(path, added)
        return new

    def _tail_of(self, x: int) -> float:
        return self._tail_after(x, self.nxt[x])

    def _tail_after(self, x: int, nb: int) -> float:
        """Schedule tail of the mapped ``x`` followed on its GPU by ``nb`` (-1: none)."""
        cost = self.timer.cost
        stail = self.stail
        t = cost[nb] + stail[nb] if nb >= 0 else 0.0
        for w, ms in self.pout[x]:
            a = ms + cost[w] + stail[w]
            if a > t:
                t = a
        return t

    def _raise_tails(self, path: list[int]) -> None:
        """Schedule tails after mapping ``path``: those of its operators from their successors,
        then, backward in reverse rank order, every mapped operator whose tail a raised tail
        raises (a producer, or the operator before it on its GPU).  Adding the path only adds
        operators and dependencies, so a tail is the larger of its old value and what its
        raised successors give: exact tails stay exact."""
        rank = self.rank
        by_rank = self.by_rank
        pin = self.pin
        cost = self.timer.cost
        stail = self.stail
        prv = self.prv
        heap: list[int] = []  # minus the ranks of the operators to visit
        push = heapq.heappush
        pop = heapq.heappop
        queued = set(path)
        for v in reversed(path):
            stail[v] = self._tail_of(v)
            push(heap, -rank[v])
        while heap:
            x = by_rank[-pop(heap)]
            tx = stail[x]
            cx = cost[x]
            u = prv[x]
            if u >= 0:
                a = cx + tx
                if a > stail[u]:
                    stail[u] = a
                    if u not in queued:
                        queued.add(u)
                        push(heap, -rank[u])
            for u, ms in pin[x]:
                a = ms + cx + tx
                if a > stail[u]:
                    stail[u] = a
                    if u not in queued:
                        queued.add(u)
                        push(heap, -rank[u])

    def _tails_back(self, path: list[int]) -> None:
        """Schedule tails of the path's operators, then backward from them (their producers and
        the operators before them on their GPU), in reverse rank order, stopping where a tail
        does not change; at most ``CAP`` operators beyond the path."""
        rank = self.rank
        by_rank = self.by_rank
        cost = self.timer.cost
        pin = self.pin
        pout = self.pout
        prv = self.prv
        nxt = self.nxt
        heap = [-rank[v] for v in path]  # minus the ranks of the operators to visit
        heapq.heapify(heap)
        pop = heapq.heappop
        push = heapq.heappush
        on_path = set(path)
        queued = set(path)
        cap = self.cap
        stail = self.stail
        while heap:
            x = by_rank[-pop(heap)]
            if x not in on_path:
                if cap <= 0:
                    continue  # left stale (path operators still pending are done)
                cap -= 1
            nb = nxt[x]  # the tail of x (as _tail_of computes it)
            t = cost[nb] + stail[nb] if nb >= 0 else 0.0
            for w, ms in pout[x]:
                a = ms + cost[w] + stail[w]
                if a > t:
                    t = a
            if t == stail[x] and x not in on_path:
                continue
            stail[x] = t
            for u, _ms in pin[x]:  # its mapped producers
                if u not in queued:
                    queued.add(u)
                    push(heap, -rank[u])
            u = prv[x]
            if u >= 0 and u not in queued:
                queued.add(u)
                push(heap, -rank[u])

    def _sync_tails(self, order: list[int] | None = None) -> None:
        """Exact schedule tails of the partial schedule (``order``: its operators in rank order),
        O(n + e)."""
        self.synced = self.count
        gpu_of = self.gpu_of
        if order is None:
            order = sorted((v for v in range(self.timer.n) if gpu_of[v] >= 0), key=self.rank.__getitem__)
        stail = self.stail
        follow = [-1] * self.timer.gpus
        for v in reversed(order):
            g = gpu_of[v]
            stail[v] = self._tail_after(v, follow[g])
            follow[g] = v


class _FastPlacement(_Placement):
    """Step 3 for the fast mode (the default): the latency of the path on each GPU is
    ``max(latency, longest path through the path's operators)`` (:meth:`_Placement._through`),
    O(path span x degree) per GPU.  With exact kept times this chooses exactly as
    :class:`_Placement` does (checked on the scale graphs); the approximation is in keeping them:
    after the choice, finish times are updated forward and tails backward, each over at most
    ``CAP`` operators beyond the path (``CAP`` at :data:`.timing_engine.BUDGET_OPS` operators, scaled
    by :func:`.timing_engine.decayed`; the rest stay stale), and every time the mapped set has grown
    by ``GROW`` all are recomputed in O(n + e)."""

    @classmethod
    def take_over(cls, exact: _Placement) -> "_FastPlacement":
        """Continue the partial schedule of an exact placement."""
        fast = cls(exact.timer, exact.rank, exact.gpu_of)
        fast.end, fast.gpu_r, fast.gpu_ops = exact.end, exact.gpu_r, exact.gpu_ops
        fast.prv, fast.nxt = exact.prv, exact.nxt
        fast.pin, fast.pout = exact.pin, exact.pout
        fast.count = sum(len(x) for x in exact.gpu_ops)
        fast._sync()
        return fast

    def place(self, path: list[int]) -> int:
        gpu_of = self.gpu_of
        best_g, best_lat = -1, 0.0
        prep = self._path_edges(path)
        for gi in range(self.timer.gpus):
            # beyond best_lat a GPU cannot beat (nor, being a higher GPU, tie) the best so far
            through = self._through(prep, gi, best_lat if best_g >= 0 else INF)
            lat = self.lat if self.lat > through else through
            if best_g < 0 or lat < best_lat:
                best_g, best_lat = gi, lat
        for v in path:
            gpu_of[v] = best_g
        new = self._retime(path, best_g, INF, INF, self.cap)
        self._insert(path, best_g, new)
        self.lat = max(self.lat, max(new.values()))
        if best_lat > self.lat:
            self.lat = best_lat
        self._tails_back(path)
        self.count += len(path)
        if self.count >= 64 and self.count >= self.synced * self.GROW:
            self._sync()
        return best_g

    def _sync(self) -> None:
        """Exact finish times and tails of the partial schedule, O(n + e)."""
        gpu_of = self.gpu_of
        order = sorted((v for v in range(self.timer.n) if gpu_of[v] >= 0), key=self.rank.__getitem__)
        free = [0.0] * self.timer.gpus
        finish_in_order(self.timer, order, gpu_of, self.end, free)
        self.lat = max(free)
        self._sync_tails(order)


def hios_lp(graph: Graph, machine: Machine, *, stage_model=None, intra: bool = True,
            window: int | None = None, streams: int | None = None, refine: int = DEFAULT_REFINE,
            serialize_links: bool = False, exact: bool = False) -> Schedule:
    window, streams = intra_options(window, streams)  # None: DEFAULT_WINDOW / DEFAULT_STREAMS of .intra_gpu
    check_refine(refine)
    check_exact(exact)
    sim = Simulator(graph, search_machine(graph, machine), stage_model, serialize_links)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of, paths = longest_path_mapping(timer, rank, exact)
    return finish(graph, sim, timer, gpu_of, rank, "hios-lp", refine, intra, window, streams,
                  {"paths": paths, "exact": exact}, machine.gpus, exact)
