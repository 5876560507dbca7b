"""HIOS-MR: the alternative inter-GPU mapping of HIOS, a dynamic program over (operator, GPU)
states in latest-start-time order, then the intra-GPU sliding window.

Steps:
  1. Rank the operators by latest start time (as HIOS-LP does); visit them in that order.  Each
     GPU runs its operators in that order, so no schedule built here can deadlock.
  2. A state ``(v, g)`` is the best partial schedule found that maps the operators visited so far
     and puts ``v`` on GPU ``g``; it records every visited operator's GPU and finish time and the
     time each GPU becomes free.  For the next operator ``v'`` and each GPU ``g'``, extend each
     state of ``v``: ``v'`` starts when ``g'`` is free and every input has arrived (the
     producer's finish, plus the edge's transfer time when the producer's GPU differs from
     ``g'``).  Keep, per ``(v', g')``, the argmin state: the earliest finish of ``v'``, ties to
     the lower partial latency, then to the lower GPU of ``v``.  When every pair of GPUs has the
     same link, GPUs that no operator uses yet are interchangeable, so only the lowest unused one
     is tried (the others would duplicate it).
  3. The best final state is the one of lowest latency (ties: lowest GPU); the mapping is read
     back from it by following the argmin pointers from the last operator to the first.
  4. Refine the mapping with at most ``refine`` passes of single-operator moves that never
     raise the latency (:mod:`.refine`).  ``refine=0`` skips steps 4 and 5.
  5. Order each GPU's operators by rank or by list scheduling (:mod:`.list_order`), whichever
     is faster.
  6. Unless ``intra=False``, apply the intra-GPU sliding window (:mod:`.intra_gpu`); keep its
     result only if the simulator confirms it is not slower.
  7. Simulate the result; if it is slower than running every operator in sequence on GPU 0,
     return that sequential schedule instead.

Steps 4-7 are shared with HIOS-LP (:func:`.mapping_steps.finish`); ``meta`` records the
same fields.  As in HIOS-LP, the final choices are made under the machine's link model
(``serialize_links`` included) and unusable spare GPUs are left out of the search.
"""

from __future__ import annotations

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import Simulator
from .timing_engine import FastTimer, arrival, lst_ranks, search_machine
from .mapping_steps import DEFAULT_REFINE, check_refine, finish
from .intra_gpu import intra_options

__all__ = ["min_finish_mapping", "hios_mr"]


def min_finish_mapping(timer: FastTimer, rank: list[int]) -> list[int]:
    """Steps 1-3: the GPU of every operator."""
    n = timer.n
    G = timer.gpus
    cost = timer.cost
    ins = timer.ins
    uniform = timer.uniform
    order = sorted(range(n), key=rank.__getitem__)
    # A state: (gpu_of list, end list, free list, latency, used GPU count); None if unreachable.
    states: list[tuple | None] = [None] * G
    v0 = order[0]
    gpu0 = [-1] * n
    gpu0[v0] = 0
    end0 = [0.0] * n
    end0[v0] = cost[v0]
    free = [0.0] * G
    free[0] = cost[v0]
    states[0] = (gpu0, end0, free, cost[v0], 1)
    back: list[list[int]] = [[-1] * G]  # back[k][g] = GPU of order[k-1] in the argmin state
    for v in order[1:]:
        new: list[tuple | None] = [None] * G
        ptr = [-1] * G
        best_key: list[tuple | None] = [None] * G
        for s, st in enumerate(states):
            if st is None:
                continue
            gpu_of, end, free, lat, used = st
            iv = ins[v]
            for g2 in range(min(G, used + 1) if uniform else G):
                fin = arrival(iv, gpu_of, end, g2, free[g2]) + cost[v]
                key = (fin, fin if fin > lat else lat)
                if best_key[g2] is None or key < best_key[g2]:
                    best_key[g2] = key
                    ptr[g2] = s
        for g2 in range(G):
            s = ptr[g2]
            if s < 0:
                continue
            gpu_of, end, free, lat, used = states[s]
            fin, lat2 = best_key[g2]
            gpu_of = gpu_of[:]
            gpu_of[v] = g2
            end = end[:]
            end[v] = fin
            free = free[:]
            free[g2] = fin
            new[g2] = (gpu_of, end, free, lat2, max(used, g2 + 1))
        states = new
        back.append(ptr)
    # Step 3: best final state, then the argmin pointers back to the first operator.
    g_last = min((s for s in range(G) if states[s] is not None), key=lambda s: (states[s][3], s))
    mapping = [-1] * n
    g = g_last
    for k in range(n - 1, -1, -1):
        mapping[order[k]] = g
        g = back[k][g]
    return mapping


def hios_mr(graph: Graph, machine: Machine, *, stage_model=None, intra: bool = True,
            window: int | None = None, streams: int | None = None, refine: int = DEFAULT_REFINE,
            serialize_links: bool = False) -> Schedule:
    window, streams = intra_options(window, streams)  # None: DEFAULT_WINDOW / DEFAULT_STREAMS of .intra_gpu
    check_refine(refine)
    sim = Simulator(graph, search_machine(graph, machine), stage_model, serialize_links)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of = min_finish_mapping(timer, rank)
    return finish(graph, sim, timer, gpu_of, rank, "hios-mr", refine, intra, window, streams, {}, machine.gpus)
