"""HEFT baseline: list scheduling over the GPUs, one operator per stage.

After Topcuoglu, Hariri and Wu, "Performance-effective and low-complexity task scheduling for
heterogeneous computing" (IEEE TPDS 2002), on identical GPUs.

Steps:
  1. Mean transfer cost of each edge: its transfer time averaged over all ordered pairs of
     distinct GPUs (on a uniform machine simply its transfer time; 0 with one GPU).
  2. Upward rank, from the sinks up: ``rank(v) = cost(v) + max over successors w of
     (mean transfer(v, w) + rank(w))``.
  3. Visit the operators by decreasing rank (ties: topological position, so a predecessor always
     comes first).  For each, on every GPU compute the earliest start: the later of the GPU's
     free time and the arrival of every input (a producer's end, plus its transfer time when it
     ran on another GPU; a byte tensor already sent to that GPU is not sent again, as in the
     simulator).  Put the operator on the GPU where it finishes first (ties: lowest GPU index),
     appended after the GPU's last stage (no insertion into gaps: stages run in order per GPU).
  4. The finish time of the last operator is the estimate (``meta['estimate']``); it equals the
     simulated latency of the schedule when links are not serialized.
  5. Simulate the schedule under the machine's link model (``serialize_links`` included); if it
     is slower than running every operator in sequence on GPU 0, return that sequential schedule
     instead (``meta['fallback'] = 'sequential'``, ``meta['estimate']`` then its latency and
     ``meta['heft_estimate']`` that of step 4), so HEFT is never worse than sequential.

On a uniform machine with more GPUs than the graph can use at once, only that many are searched
(:func:`.timing_engine.search_machine`); the result is padded back with empty GPUs.
"""

from __future__ import annotations

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import Simulator
from .timing_engine import pad_gpus, search_machine

__all__ = ["mean_transfer_ms", "upward_rank", "heft"]


def mean_transfer_ms(graph: Graph, machine: Machine) -> list[list[float]]:
    """``out[u][k]``: mean transfer time of ``graph.out_edges[u][k]`` over ordered pairs of distinct GPUs."""
    n = machine.gpus
    if n == 1:
        return [[0.0] * len(oe) for oe in graph.out_edges]
    if machine.uniform():
        return [[machine.transfer_ms(e, 0, 1) for _, e in oe] for oe in graph.out_edges]
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    return [[sum(machine.transfer_ms(e, a, b) for a, b in pairs) / len(pairs) for _, e in oe]
            for oe in graph.out_edges]


def upward_rank(graph: Graph, machine: Machine) -> list[float]:
    comm = mean_transfer_ms(graph, machine)
    rank = [0.0] * len(graph.ops)
    for u in reversed(graph.topo):
        tail = 0.0
        for k, (w, _) in enumerate(graph.out_edges[u]):
            t = comm[u][k] + rank[w]
            if t > tail:
                tail = t
        rank[u] = graph.ops[u].cost + tail
    return rank


def heft(graph: Graph, machine: Machine, *, stage_model=None, serialize_links: bool = False) -> Schedule:
    gpus = machine.gpus
    machine = search_machine(graph, machine)
    n_gpu = machine.gpus
    rank = upward_rank(graph, machine)
    order = sorted(range(len(graph.ops)), key=lambda v: (-rank[v], graph.position[v]))
    gpu_of = [-1] * len(graph.ops)
    end = [0.0] * len(graph.ops)
    free = [0.0] * n_gpu
    sent: dict[tuple[int, int], float] = {}  # (producer, gpu) or (producer, -consumer-1) -> arrival
    stages: list[list[list[int]]] = [[] for _ in range(n_gpu)]
    for v in order:
        best_g, best_end = 0, float("inf")
        for g in range(n_gpu):
            t = free[g]
            for u, e in graph.in_edges[v]:
                gu = gpu_of[u]
                if gu == g:
                    arr = end[u]
                else:
                    arr = sent.get((u, g) if e.time is None else (u, -v - 1))
                    if arr is None:
                        arr = end[u] + machine.transfer_ms(e, gu, g)
                if arr > t:
                    t = arr
            fin = t + graph.ops[v].cost
            if fin < best_end:
                best_g, best_end = g, fin
        for u, e in graph.in_edges[v]:
            gu = gpu_of[u]
            if gu != best_g:
                key = (u, best_g) if e.time is None else (u, -v - 1)
                if key not in sent:
                    sent[key] = end[u] + machine.transfer_ms(e, gu, best_g)
        gpu_of[v] = best_g
        end[v] = best_end
        free[best_g] = best_end
        stages[best_g].append([v])
    meta = {"estimate": max(free) if free else 0.0}
    sim = Simulator(graph, machine, stage_model, serialize_links)
    seq = [[[i] for i in graph.topo]] + [[] for _ in range(n_gpu - 1)]
    seq_lat = sim.run(seq).latency
    if sim.run(stages).latency > seq_lat:
        stages = seq
        meta.update({"fallback": "sequential", "heft_estimate": meta["estimate"], "estimate": seq_lat})
    return Schedule.from_indices(graph, pad_gpus(stages, gpus), "heft", meta)
