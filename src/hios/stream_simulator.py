"""Barrier-free simulation of a stream program: how long a plan's CUDA-graph replay takes.

The stage simulator (:mod:`hios.simulator`) ends every stage at a barrier; the runtime has none:
each stream runs its segments in order and waits only for the events of the segments it reads
(:mod:`hios.program.segmenting`).  On irregular graphs (NASNet cells, random wiring) and at large
inputs a stage's short members' successors start while its longest member still runs; the replay
traces of ``benchmarks/sim_to_real.py`` show it.  This simulator runs the program itself.

Steps of :func:`simulate_program`:

1. Each step has a duration alone (a segment: the costs of its operators summed; a transfer: the
   time given for it, 0 by default) and a utilization (a segment: its operators' utilizations
   weighted by cost).
2. A step starts as soon as the step before it on its stream has ended and every event it waits
   for has been recorded (``waits`` of a segment, ``wait`` of a transfer); an event is recorded
   when the step that records it ends.
3. Running segments share the GPU by the model's rate law (``model.rates(utils)``, e.g.
   :meth:`hios.cost.costmodel.SharingStageModel.rates`): between two events each advances at its
   rate.  All logical devices share one GPU (``shared``, the default: the benchmark's logical
   devices are streams of one GPU) or each device is a GPU of its own.  Transfers use no compute.
4. The latency is when the last step ends (event-driven: the clock jumps to the next start or end).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .errors import HiosError
from .graph import Graph

__all__ = ["program_step_costs", "simulate_program"]

_EPS = 1e-12


def program_step_costs(graph: Graph, program: Mapping) -> tuple[list[float], list[float]]:
    """Step 1: per step of ``program`` (:meth:`hios.program.segmenting.ExecProgram.to_dict`) its
    cost (ms, the operators of a segment summed; 0 for a transfer) and utilization (a segment's
    operators' utilizations weighted by cost; 1 for a transfer)."""
    costs, utils = [], []
    for st in program["steps"]:
        if st["kind"] != "segment":
            costs.append(0.0)
            utils.append(1.0)
            continue
        ops = [graph[n] for n in st["ops"]]
        c = sum(op.cost for op in ops)
        costs.append(c)
        utils.append(sum(op.cost * op.utilization for op in ops) / c if c > 0 else 1.0)
    return costs, utils


def simulate_program(program: Mapping, costs: Sequence[float], utils: Sequence[float], model,
                     shared: bool = True) -> float:
    """Steps 2-4: the latency (ms) of ``program`` whose steps take ``costs`` alone and have
    ``utils``, their sharing of the GPU given by ``model.rates``."""
    steps = program["steps"]
    if len(costs) != len(steps) or len(utils) != len(steps):
        raise HiosError(f"simulate_program: {len(steps)} steps but {len(costs)} costs and {len(utils)} utilizations")
    if not hasattr(model, "rates"):
        raise HiosError(f"stage model {type(model).__name__} has no rate law for the stream simulator")
    lanes: dict[tuple, list[int]] = {}
    for i, st in enumerate(steps):
        lane = (st["device"], st["stream"]) if st["kind"] == "segment" else ("transfer", i)
        lanes.setdefault(lane, []).append(i)
    head = {lane: 0 for lane in lanes}
    recorded: set[int] = set()
    running: dict[int, float] = {}  # step -> ms alone left
    t, left = 0.0, len(steps)
    while left:
        for lane, ids in lanes.items():
            if head[lane] < len(ids) and ids[head[lane]] not in running:
                i = ids[head[lane]]
                st = steps[i]
                waits = st.get("waits", []) if st["kind"] == "segment" else [st["wait"]]
                if all(e in recorded for e in waits):
                    running[i] = max(0.0, float(costs[i]))
        if not running:
            raise HiosError("simulate_program: the program waits for an event that is never recorded")
        rate = {}
        groups: dict[object, list[int]] = {}
        for i in running:
            if steps[i]["kind"] == "segment":
                groups.setdefault(0 if shared else steps[i]["device"], []).append(i)
            else:
                rate[i] = 1.0
        for ids in groups.values():
            rate.update(zip(ids, model.rates([utils[i] for i in ids])))
        dt = min(rem / rate[i] for i, rem in running.items())
        t += dt
        for i in list(running):
            rem = running[i] - rate[i] * dt
            if rem <= _EPS * max(1.0, costs[i]):
                del running[i]
                left -= 1
                st = steps[i]
                lane = (st["device"], st["stream"]) if st["kind"] == "segment" else ("transfer", i)
                head[lane] += 1
                if st.get("record") is not None:
                    recorded.add(st["record"])
            else:
                running[i] = rem
    return t
