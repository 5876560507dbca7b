"""Layered random DAGs, as in the simulation study of the HIOS work.

Steps:
  1. One source layer and one sink layer of one operator each, and ``layers`` inner layers
     sharing the other ``nodes - 2`` operators, each holding between ceil(layers/2) and
     10*layers operators: every inner layer starts at the minimum and the remaining operators
     are handed out one at a time to a random inner layer that is not yet full.
  2. Every operator of a layer gets an edge to a random operator of the next layer, and every
     operator of the next layer an edge from a random operator of the layer before.
  3. Random forward edges (from a random layer to a random later layer) are added until the
     graph holds ``edges`` edges.
  4. Operator weight uniform in [0.1, 4.0] ms, utilization uniform in [0.6, 1.0]; the weight of an
     edge is the weight of its destination times ``comm_ratio``.

The same arguments and seed always give the same graph.  Operators are named ``0 .. nodes-1``
layer by layer; ``graph.meta["layer_sizes"]`` lists the layer sizes, source and sink included.
"""

from __future__ import annotations

import math
import random

from .errors import HiosError, option
from .graph import Edge, Graph, GraphError, Operator
from .limits import MAX_COMM_RATIO, MAX_COST_MS, MAX_EDGES, MAX_OPERATORS, check_count, check_real

__all__ = ["layer_sizes", "layered_dag"]


def layer_sizes(rng: random.Random, inner_nodes: int, layers: int) -> list[int]:
    if layers < 1:
        raise GraphError(f"{option('layers')} must be at least 1, got {layers}")
    lo, hi = math.ceil(layers / 2), 10 * layers
    if not lo * layers <= inner_nodes <= hi * layers:
        raise GraphError(f"{inner_nodes + 2} nodes cannot fill {layers} inner layers of {lo}..{hi} operators "
                         f"(need between {lo * layers + 2} and {hi * layers + 2} nodes)")
    sizes = [lo] * layers
    spare = inner_nodes - lo * layers
    while spare:
        k = rng.randrange(layers)
        if sizes[k] < hi:
            sizes[k] += 1
            spare -= 1
    return sizes


def layered_dag(nodes: int = 200, edges: int = 400, layers: int = 8, comm_ratio: float = 0.8,
                seed: int = 1, wmin: float = 0.1, wmax: float = 4.0, umin: float = 0.6, umax: float = 1.0) -> Graph:
    if not (math.isfinite(comm_ratio) and comm_ratio >= 0):
        raise GraphError(f"{option('comm_ratio')} must be a finite number >= 0, got {comm_ratio}")
    if nodes < 3:
        raise GraphError(f"{option('nodes')} must be at least 3 (a source, a sink and one inner operator), got {nodes}")
    try:
        check_count(option("nodes"), nodes, "operators", MAX_OPERATORS)
        check_count(option("edges"), edges, "edges", MAX_EDGES, minimum=0)
        check_real(option("comm_ratio"), comm_ratio, "comm_ratio", MAX_COMM_RATIO)
        check_real(option("wmax"), wmax, "cost", MAX_COST_MS / max(comm_ratio, 1.0))
    except HiosError as e:
        raise GraphError(str(e)) from None
    rng = random.Random(seed)
    sizes = [1] + layer_sizes(rng, nodes - 2, layers) + [1]
    ids: list[list[int]] = []
    nxt = 0
    for s in sizes:
        ids.append(list(range(nxt, nxt + s)))
        nxt += s
    weight = [round(rng.uniform(wmin, wmax), 6) for _ in range(nodes)]
    util = [round(rng.uniform(umin, umax), 6) for _ in range(nodes)]
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()

    def add(u: int, v: int) -> None:
        if (u, v) not in seen:
            seen.add((u, v))
            pairs.append((u, v))

    for a, b in zip(ids, ids[1:]):
        for u in a:
            add(u, rng.choice(b))
        for v in b:
            add(rng.choice(a), v)
    if len(pairs) > edges:
        raise GraphError(f"{option('edges', edges)} is too few: linking {len(sizes)} layers already takes {len(pairs)} edges")
    layer_of = [k for k, s in enumerate(sizes) for _ in range(s)]
    possible = sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i + 1, len(sizes)))
    if edges > possible:
        raise GraphError(f"{option('edges', edges)} is too many: these layers admit at most {possible} forward edges")
    while len(pairs) < edges:
        la, lb = sorted(rng.sample(range(len(sizes)), 2))
        add(rng.choice(ids[la]), rng.choice(ids[lb]))
    assert all(layer_of[u] < layer_of[v] for u, v in pairs)
    ops = [Operator(str(i), weight[i], "generic", 0, util[i]) for i in range(nodes)]
    es = [Edge(str(u), str(v), 0, round(weight[v] * comm_ratio, 6)) for u, v in pairs]
    return Graph(ops, es, f"layered-n{nodes}-e{edges}-l{layers}-c{comm_ratio}-s{seed}",
                 {"generator": "layered", "nodes": nodes, "edges": edges, "layers": layers,
                  "comm_ratio": comm_ratio, "seed": seed, "layer_sizes": sizes})
