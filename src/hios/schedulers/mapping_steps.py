"""Steps shared by the HIOS mappers (HIOS-LP and HIOS-MR) once every operator has a GPU.

Steps (5-8 of :mod:`.hios_lp`, 4-7 of :mod:`.hios_mr`):
  1. Refine the mapping with at most ``refine`` passes of single-operator moves that never raise
     the latency (:mod:`.refine`); ``refine=0`` skips this step and the next.  With
     ``exact=False`` the exact refinement runs until :data:`EXACT_REFINE_BUDGET` re-timings per
     operator are spent (:func:`.timing_engine.exact_budget`: the whole of it on small graphs),
     then the fast refinement (:func:`.refine.refine_mapping_fast`) continues from its result.
  2. Order each GPU's operators either by rank or in list-scheduling order (:mod:`.list_order`),
     whichever the simulator finds faster (rank order on a tie).
  3. Unless ``intra=False``, apply the intra-GPU sliding window (:mod:`.intra_gpu`, its fast mode
     unless ``exact=True``); keep its result only if the simulator confirms it is not slower.
  4. If the result is slower than running every operator in sequence on GPU 0, return that
     sequential schedule instead (simulated only when the result is not below the sum of the
     costs, a lower bound of the sequential latency).

Every choice between whole schedules here is made by the simulator, so under its link model
(``serialize_links`` included); its latencies are computed by the fast evaluator where that is the
same computation (:attr:`.timing_engine.FastTimer.as_simulator`), about 4x cheaper.
"""

from __future__ import annotations

from ..errors import HiosError
from ..graph import Graph
from ..schedule import Schedule
from ..simulator import Simulator
from .intra_gpu import improve_stages
from .list_order import list_schedule_order
from .refine import refine_mapping_budget, refine_mapping_fast
from .timing_engine import INF, FastTimer, exact_budget, pad_gpus

__all__ = ["DEFAULT_REFINE", "EXACT_REFINE_BUDGET", "stages_from_mapping", "finish", "check_refine", "check_exact"]

#: Passes of the single-operator refinement by default.
DEFAULT_REFINE = 2
#: The fast mode refines exactly until this many re-timed operators per operator of the graph have
#: been spent (:func:`.timing_engine.exact_budget`), then finishes with the fast refinement
#: (:func:`.refine.refine_mapping_fast`).
EXACT_REFINE_BUDGET = 500


def stages_from_mapping(gpu_of: list[int], rank: list[int], gpus: int) -> list[list[list[int]]]:
    """One operator per stage, each GPU in rank order."""
    stages: list[list[list[int]]] = [[] for _ in range(gpus)]
    for v in sorted(range(len(gpu_of)), key=rank.__getitem__):
        stages[gpu_of[v]].append([v])
    return stages


def finish(graph: Graph, sim: Simulator, timer: FastTimer, gpu_of: list[int], rank: list[int],
           algorithm: str, refine: int, intra: bool, window: int, streams: int, meta: dict,
           gpus: int | None = None, exact: bool = True) -> Schedule:
    """Steps 1-4 (module docstring) on a complete mapping.  Every choice between whole schedules
    here is made by ``sim``; ``gpus`` pads the result with empty GPUs (the machine's count when
    the search used fewer)."""
    G = timer.gpus

    def latency(stages: list) -> float:
        """The simulator's latency of a complete schedule."""
        if timer.as_simulator:
            lat = timer.latency(stages)
            if lat is not None:
                return lat
        return sim.latency(stages)  # (also raises the simulator's error on a broken schedule)

    # the refinement times the mapping in rank order anyway: its latencies are the fast evaluator's
    known: dict = {}
    budget = INF if exact else exact_budget(EXACT_REFINE_BUDGET, timer.n)
    start = gpu_of
    gpu_of, moves, done = refine_mapping_budget(timer, rank, gpu_of, refine, budget, known)
    if not done:
        gpu_of, more = refine_mapping_fast(timer, rank, gpu_of, refine)
        moves += more
    if not timer.as_simulator:
        known.clear()
    meta["mapping_latency"] = known.get("mapping")
    if meta["mapping_latency"] is None:
        meta["mapping_latency"] = latency(stages_from_mapping(start, rank, G))
    stages = stages_from_mapping(gpu_of, rank, G)
    best_lat = known.get("refined")
    if best_lat is None:
        best_lat = latency(stages)
    best = stages
    meta.update({"refine_passes": refine, "refine_moves": moves, "refined_latency": best_lat, "order": "rank"})
    if refine > 0:
        listed = list_schedule_order(timer, gpu_of, rank)
        lat = latency(listed)
        if lat < best_lat:
            best, best_lat = listed, lat
            meta["order"] = "list"
    meta.update({"ordered_latency": best_lat, "intra": bool(intra)})
    if intra:
        meta.update({"intra_window": window, "intra_streams": streams})
        grouped, lat = improve_stages(timer, best, window, streams, exact=exact)
        if not timer.as_simulator:  # (else its latency is the fast evaluator's of a full timing)
            lat = latency(grouped)
        if lat <= best_lat:
            best, best_lat = grouped, lat
    # The sequential schedule's latency is the sum of the costs (each operator waits for the one
    # before it on GPU 0); it is simulated only when the result is not clearly below that sum.
    if best_lat >= sum(timer.cost) * (1.0 - 1e-9):
        seq = [[[i] for i in graph.topo]] + [[] for _ in range(G - 1)]
        seq_lat = latency(seq)
    else:
        seq_lat = best_lat
    if best_lat > seq_lat:
        meta["fallback"] = "sequential"
        best, best_lat = seq, seq_lat
    meta["latency"] = best_lat
    return Schedule.from_indices(graph, pad_gpus(best, gpus or G), algorithm, meta)


def check_exact(exact) -> None:
    """One-line error unless ``exact`` is a bool."""
    if not isinstance(exact, bool):
        raise HiosError(f"option exact must be true or false, got {exact!r}")


def check_refine(refine) -> None:
    """One-line error unless ``refine`` is an integer >= 0."""
    if not isinstance(refine, int) or isinstance(refine, bool) or refine < 0:
        raise HiosError(f"option refine must be an integer >= 0 (passes), got {refine!r}")


