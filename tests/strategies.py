"""Shared hypothesis strategies: random DAGs and random valid (deadlock-free) schedules.

API (import from ``tests/strategies.py``; pytest puts ``tests/`` on ``sys.path``)::

    from strategies import dags, valid_schedules, random_valid_schedule, graph_and_schedule

    @given(dags(max_nodes=12))                      # -> hios.Graph
    @given(graph_and_schedule(max_nodes=12, max_gpus=3))   # -> (Graph, gpus, Schedule)

    @given(st.data())
    def test(data):
        g = data.draw(dags())
        s = data.draw(valid_schedules(g, gpus=2))    # -> hios.Schedule

    random_valid_schedule(graph, gpus, rng, max_stage=4, p_single=0.5)  # plain function, rng = random.Random

How a random valid schedule is built: every operator gets a random GPU; then stages are laid
down one at a time in a global sequence: pick a random GPU that has *ready* operators (all
predecessors already placed), and make its next stage a random non-empty subset of them
(one operator with probability ``p_single``, else up to ``max_stage``).  Ready operators never
depend on each other, and the global sequence of stages is a topological order of the stage
graph, so the schedule never deadlocks; every deadlock-free schedule with that assignment can
come out of this process.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from hios.graph import Edge, Graph, Operator
from hios.schedule import Schedule

EDGE_KINDS = ("bytes", "time", "mixed")


@st.composite
def dags(draw, max_nodes: int = 10, min_nodes: int = 1, edge_kind: str = "mixed", max_edges: int | None = None,
         zero_costs: bool = True) -> Graph:
    """A random valid DAG.  Operators get shuffled names (so insertion order is not a topological
    order), costs in [0, 5] ms (0 allowed unless ``zero_costs=False``), utilization in [0.05, 1],
    output bytes.  ``edge_kind``: "bytes" (edges carry bytes only), "time" (explicit time only) or
    "mixed" (either or both)."""
    if edge_kind not in EDGE_KINDS:
        raise ValueError(f"edge_kind must be one of {EDGE_KINDS}")
    n = draw(st.integers(min_nodes, max_nodes))
    lo = 0.0 if zero_costs else 0.01
    costs = draw(st.lists(st.floats(lo, 5.0, allow_nan=False, allow_infinity=False), min_size=n, max_size=n))
    utils = draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n))
    out_bytes = draw(st.lists(st.integers(0, 50_000_000), min_size=n, max_size=n))
    perm = draw(st.permutations(range(n)))  # position of operator k in the insertion order
    limit = max_edges if max_edges is not None else 2 * n
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=limit)) if n > 1 else []
    # Orient every pair from the lower to the higher rank: the rank order is a topological order.
    seen = set()
    edges = []
    for a, b in pairs:
        if a == b:
            continue
        u, v = min(a, b), max(a, b)
        if (u, v) in seen:
            continue
        seen.add((u, v))
        kind = edge_kind if edge_kind != "mixed" else draw(st.sampled_from(["bytes", "time", "both"]))
        nbytes = out_bytes[u] if kind in ("bytes", "both") else 0
        time = draw(st.floats(0.0, 3.0)) if kind in ("time", "both") else None
        edges.append(Edge(f"op{u}", f"op{v}", nbytes, time))
    ops = [None] * n
    for rank in range(n):
        ops[perm[rank]] = Operator(f"op{rank}", costs[rank], "generic", out_bytes[rank], utils[rank])
    edges = [edges[k] for k in draw(st.permutations(range(len(edges))))]
    return Graph(ops, edges, "hypothesis-dag")


def random_valid_schedule(graph: Graph, gpus: int, rng: random.Random, max_stage: int = 4,
                          p_single: float = 0.5, assignment: dict[str, int] | None = None) -> Schedule:
    """A random schedule of ``graph`` on ``gpus`` GPUs that is valid (each operator once, no two
    dependent operators in a stage, no deadlock).  ``assignment`` (name -> GPU) fixes the placement."""
    n = len(graph.ops)
    gpu_of = [assignment[op.name] if assignment is not None else rng.randrange(gpus) for op in graph.ops]
    missing = [len(p) for p in graph.preds]
    ready: list[list[int]] = [[] for _ in range(gpus)]
    for i in range(n):
        if missing[i] == 0:
            ready[gpu_of[i]].append(i)
    stages: list[list[list[int]]] = [[] for _ in range(gpus)]
    placed = 0
    while placed < n:
        g = rng.choice([k for k in range(gpus) if ready[k]])
        pool = ready[g]
        size = 1 if rng.random() < p_single else rng.randint(1, min(max_stage, len(pool)))
        rng.shuffle(pool)
        stage, ready[g] = pool[:size], pool[size:]
        stages[g].append(stage)
        placed += len(stage)
        for v in stage:
            for w in graph.succs[v]:
                missing[w] -= 1
                if missing[w] == 0:
                    ready[gpu_of[w]].append(w)
    return Schedule.from_indices(graph, stages, "random")


def valid_schedules(graph: Graph, gpus: int, max_stage: int = 4) -> st.SearchStrategy[Schedule]:
    """Hypothesis strategy of random valid schedules of ``graph`` (see :func:`random_valid_schedule`)."""
    return st.builds(lambda seed, p: random_valid_schedule(graph, gpus, random.Random(seed), max_stage, p),
                     st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5, 1.0]))


@st.composite
def graph_and_schedule(draw, max_nodes: int = 10, max_gpus: int = 3, edge_kind: str = "mixed",
                       max_stage: int = 4):
    """(graph, gpus, schedule) with a random DAG and a random valid schedule of it."""
    graph = draw(dags(max_nodes=max_nodes, edge_kind=edge_kind))
    gpus = draw(st.integers(1, max_gpus))
    return graph, gpus, draw(valid_schedules(graph, gpus, max_stage))


@st.composite
def join_graphs(draw, max_cells: int = 6, max_gpus: int = 2):
    """(graph, gpus, schedule): NASNet-like cells, each a costly operator and a cheap one (from
    random earlier operators) joined by an ``add``, sometimes a second add of the first and another
    cheap operator, sometimes an extra edge that gives a cheap operator a second consumer; cells on
    random GPUs, a random valid schedule."""
    names, ops, edges = ["in"], [Operator("in", 1.0, "generic")], []
    cell_of = {"in": 0}
    for k in range(draw(st.integers(1, max_cells))):
        def pick():
            return names[draw(st.integers(0, len(names) - 1))]
        p, c, j = f"c{k}.conv", f"c{k}.pool", f"c{k}.add"
        ops += [Operator(p, draw(st.floats(0.5, 5.0)), "conv"), Operator(c, draw(st.floats(0.0, 2.0)), "pool"),
                Operator(j, 0.1, "add")]
        edges += [Edge(pick(), p), Edge(pick(), c), Edge(p, j), Edge(c, j)]
        new = [p, c, j]
        if draw(st.booleans()):
            c2, j2 = f"c{k}.pool2", f"c{k}.add2"
            ops += [Operator(c2, draw(st.floats(0.0, 1.0)), "pool"), Operator(j2, 0.1, "add")]
            edges += [Edge(pick(), c2), Edge(j, j2), Edge(c2, j2)]
            new += [c2, j2]
        if draw(st.booleans()):  # the cheap operator gets a second consumer
            ops.append(Operator(f"c{k}.tap", 0.2, "conv"))
            edges.append(Edge(c, f"c{k}.tap"))
            new.append(f"c{k}.tap")
        for n in new:
            cell_of[n] = k + 1
        names += new
    graph = Graph(ops, edges, "join-cells")
    gpus = draw(st.integers(1, max_gpus))
    dev = [draw(st.integers(0, gpus - 1)) for _ in range(max(cell_of.values()) + 1)]
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    sched = random_valid_schedule(graph, gpus, rng, max_stage=4, p_single=draw(st.sampled_from([0.0, 0.5])),
                                  assignment={n: dev[cell_of[n]] for n in names})
    return graph, gpus, sched
