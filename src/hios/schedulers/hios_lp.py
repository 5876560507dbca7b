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
     to the path ending first in topological order.
  3. Try the whole path on each GPU: insert it into that GPU's rank order and evaluate the
     latency of the partial schedule (the operators mapped so far plus the path; inputs from
     unmapped operators are ignored, as ``Simulator.run(stages, complete=False)`` does,
     including the transfers from operators mapped earlier on other GPUs).  Keep the GPU of
     lowest latency; ties go to the lowest GPU index.  The evaluation is incremental: times of
     operators ranked before the path's first operator do not change and are reused.
  4. Mark the path mapped and repeat from 2 until every operator is mapped.
  5. Refine the mapping with at most ``refine`` passes of single-operator moves that never
     raise the latency (:mod:`.refine`).  ``refine=0`` skips steps 5 and 6 and gives the plain
     longest-path mapping, each GPU in rank order.
  6. Order each GPU's operators either by rank or in the order a list scheduler starts them
     (earliest start first, ties by rank; :mod:`.list_order`), whichever the simulator finds
     faster (rank order on a tie).  Both orders are dependency-consistent.
  7. Unless ``intra=False``, apply the intra-GPU sliding window (:mod:`.intra_gpu`) with
     ``window`` and ``streams``, walking each GPU in the order of step 6; keep its result only
     if the simulator confirms it is not slower.
  8. Simulate the result; if it is slower than running every operator in sequence on GPU 0,
     return that sequential schedule instead (so HIOS-LP is never worse than sequential).

Link model: the searches of steps 2-7 time transfers without link serialization (the fast
evaluator); every choice between whole schedules in steps 6-8 is made by the simulator under the
machine's link model, ``serialize_links`` included, so the answer is never worse than sequential
under the model it is evaluated with.  GPUs: on a uniform machine with more GPUs than the graph
can use at once (:func:`._fastsim.usable_gpus`), the search runs on that many and the result is
padded with empty GPUs, so the work does not grow with unusable GPUs.

``meta`` records the number of paths, the latency after the mapping (``mapping_latency``), after
refinement (``refined_latency``) and after ordering (``ordered_latency``), the moves made, the
order chosen (``order``: "rank" or "list"), and ``fallback`` when step 8 applied.
"""

from __future__ import annotations

from bisect import bisect_left

from ..errors import HiosError
from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import Simulator
from ._fastsim import FastTimer, lst_ranks, pad_gpus, search_machine
from .intra_gpu import improve_stages, intra_options
from .list_order import list_schedule_order
from .refine import refine_mapping

__all__ = ["DEFAULT_REFINE", "longest_path_mapping", "stages_from_mapping", "finish", "check_refine",
           "hios_lp"]

#: Passes of the single-operator refinement (step 5) by default.
DEFAULT_REFINE = 2


def longest_path_mapping(timer: FastTimer, rank: list[int]) -> tuple[list[int], int]:
    """Steps 2-4: the GPU of every operator, and the number of paths mapped."""
    g = timer.graph
    n = timer.n
    G = timer.gpus
    cost = timer.cost
    ins = timer.ins
    in_w = timer.in_weight
    topo = g.topo
    gpu_of = [-1] * n
    end = [0.0] * n
    mapped: list[int] = []  # mapped operators by rank
    mapped_r: list[int] = []  # their ranks
    gpu_r: list[list[int]] = [[] for _ in range(G)]  # ranks of the operators of each GPU
    gpu_ops: list[list[int]] = [[] for _ in range(G)]
    rank_key = rank.__getitem__
    unmapped = list(topo)
    paths = 0
    dist = [0.0] * n
    parent = [-1] * n
    while unmapped:
        # Step 2: longest path over unmapped operators (topological order).
        best_v, best_d = -1, -1.0
        for v in unmapped:
            d0 = 0.0
            par = -1
            for u, w in in_w[v]:
                if gpu_of[u] < 0:
                    x = dist[u] + w
                    if x > d0 or par < 0 and x == d0:
                        d0, par = x, u
            d = d0 + cost[v]
            dist[v] = d
            parent[v] = par
            if d > best_d:
                best_d, best_v = d, v
        path = []
        v = best_v
        while v >= 0:
            path.append(v)
            v = parent[v]
        path.sort(key=rank_key)
        paths += 1
        # Step 3: evaluate the path on each GPU, reusing the times of operators ranked before it.
        r0 = rank[path[0]]
        i0 = bisect_left(mapped_r, r0)
        seq = sorted(mapped[i0:] + path, key=rank_key)
        free0 = []
        for gi in range(G):
            k = bisect_left(gpu_r[gi], r0)
            free0.append(end[gpu_ops[gi][k - 1]] if k else 0.0)
        best_g, best_lat, best_end = -1, 0.0, None
        for gi in range(G):
            for v in path:
                gpu_of[v] = gi
            e = end[:]
            free = free0[:]
            for v in seq:
                gv = gpu_of[v]
                t = free[gv]
                for u, row in ins[v]:
                    gu = gpu_of[u]
                    if gu >= 0:
                        a = e[u] + row[gu][gv]
                        if a > t:
                            t = a
                t += cost[v]
                if best_g >= 0 and t >= best_lat:
                    break  # cannot beat (nor, being a higher GPU, tie) the best GPU so far
                e[v] = t
                free[gv] = t
            else:
                lat = max(free)
                if best_g < 0 or lat < best_lat:
                    best_g, best_lat, best_end = gi, lat, e
        # Step 4: commit.
        for v in path:
            gpu_of[v] = best_g
            r = rank[v]
            k = bisect_left(mapped_r, r)
            mapped_r.insert(k, r)
            mapped.insert(k, v)
            k = bisect_left(gpu_r[best_g], r)
            gpu_r[best_g].insert(k, r)
            gpu_ops[best_g].insert(k, v)
        end = best_end
        on_path = set(path)
        unmapped = [v for v in unmapped if v not in on_path]
    return gpu_of, paths


def stages_from_mapping(gpu_of: list[int], rank: list[int], gpus: int) -> list[list[list[int]]]:
    """One operator per stage, each GPU in rank order."""
    stages: list[list[list[int]]] = [[] for _ in range(gpus)]
    for v in sorted(range(len(gpu_of)), key=rank.__getitem__):
        stages[gpu_of[v]].append([v])
    return stages


def finish(graph: Graph, sim: Simulator, timer: FastTimer, gpu_of: list[int], rank: list[int],
           algorithm: str, refine: int, intra: bool, window: int, streams: int, meta: dict,
           gpus: int | None = None) -> Schedule:
    """Steps 5-8 of HIOS-LP, shared with HIOS-MR.  Every choice between whole schedules here is
    made by ``sim``, so under its link model (``serialize_links`` included); ``gpus`` pads the
    result with empty GPUs (the machine's count when the search used fewer)."""
    G = timer.gpus
    meta["mapping_latency"] = sim.run(stages_from_mapping(gpu_of, rank, G)).latency
    gpu_of, moves = refine_mapping(timer, rank, gpu_of, refine)
    stages = stages_from_mapping(gpu_of, rank, G)
    best, best_lat = stages, sim.run(stages).latency
    meta.update({"refine_passes": refine, "refine_moves": moves, "refined_latency": best_lat, "order": "rank"})
    if refine > 0:
        listed = list_schedule_order(timer, gpu_of, rank)
        lat = sim.run(listed).latency
        if lat < best_lat:
            best, best_lat = listed, lat
            meta["order"] = "list"
    meta.update({"ordered_latency": best_lat, "intra": bool(intra)})
    if intra:
        meta.update({"intra_window": window, "intra_streams": streams})
        grouped, _ = improve_stages(timer, best, window, streams)
        lat = sim.run(grouped).latency
        if lat <= best_lat:
            best, best_lat = grouped, lat
    seq = [[[i] for i in graph.topo]] + [[] for _ in range(G - 1)]
    seq_lat = sim.run(seq).latency
    if best_lat > seq_lat:
        meta["fallback"] = "sequential"
        best, best_lat = seq, seq_lat
    meta["latency"] = best_lat
    return Schedule.from_indices(graph, pad_gpus(best, gpus or G), algorithm, meta)


def check_refine(refine) -> None:
    if not isinstance(refine, int) or isinstance(refine, bool) or refine < 0:
        raise HiosError(f"option refine must be an integer >= 0 (passes), got {refine!r}")


def hios_lp(graph: Graph, machine: Machine, *, stage_model=None, intra: bool = True,
            window: int | None = None, streams: int | None = None, refine: int = DEFAULT_REFINE,
            serialize_links: bool = False) -> Schedule:
    window, streams = intra_options(window, streams)  # None: DEFAULT_WINDOW / DEFAULT_STREAMS of .intra_gpu
    check_refine(refine)
    sim = Simulator(graph, search_machine(graph, machine), stage_model, serialize_links)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of, paths = longest_path_mapping(timer, rank)
    return finish(graph, sim, timer, gpu_of, rank, "hios-lp", refine, intra, window, streams, {"paths": paths},
                  machine.gpus)
