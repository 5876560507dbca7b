"""RandWire: a randomly wired network (Xie et al., "Exploring Randomly Wired Neural Networks for
Image Recognition", 2019), small-regime layout, as used by the IOS and HIOS benchmarks.

Layout (C channels, N nodes per random stage):

* stem: 3x3 conv stride 2 (C/2) → BN → ReLU → 3x3 conv stride 2 (C) → BN;
* three random stages of N/2, N and N nodes with C, 2C and 4C channels;
* head: ReLU → 1x1 conv (1280) → BN → ReLU → global average pool → fully connected.

A random stage is a Watts–Strogatz graph ``WS(n, k, p)`` (networkx, fixed seed) whose edges are
oriented from the lower to the higher node id, which makes it a DAG.  Every node aggregates its
inputs (sigmoid-weighted sum when it has several), then ReLU → 3x3 separable convolution
(depthwise 3x3 + pointwise 1x1) → BN.  Nodes without predecessors read the stage input with
stride 2; the stage output is the mean of the nodes without successors.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import HiosError

__all__ = ["RandWire", "randwire", "ws_dag"]


def ws_dag(n: int, k: int, p: float, seed: int) -> list[list[int]]:
    """Predecessor lists of a Watts–Strogatz graph oriented low id → high id."""
    try:
        import networkx as nx
    except ImportError:
        raise HiosError("model 'randwire' needs networkx: pip install hios[torch]") from None
    g = nx.watts_strogatz_graph(n, k, p, seed=seed)
    preds: list[list[int]] = [[] for _ in range(n)]
    for u, v in g.edges():
        a, b = min(u, v), max(u, v)
        preds[b].append(a)
    return [sorted(p) for p in preds]


class _Node(nn.Module):
    def __init__(self, inputs: int, cin: int, cout: int, stride: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(inputs)) if inputs > 1 else None
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 1:
            x = xs[0]
        else:
            w = torch.sigmoid(self.weight).view(-1, 1, 1, 1, 1)
            x = (torch.stack(xs) * w).sum(0)
        return self.bn(self.pointwise(self.depthwise(torch.relu(x))))


class _Stage(nn.Module):
    def __init__(self, preds: list[list[int]], cin: int, cout: int):
        super().__init__()
        self.preds = preds
        n = len(preds)
        has_succ = {u for ps in preds for u in ps}
        self.outputs = [v for v in range(n) if v not in has_succ]
        self.nodes = nn.ModuleList(
            _Node(max(1, len(ps)), cout if ps else cin, cout, 1 if ps else 2) for ps in preds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals: list[torch.Tensor] = []
        for v, node in enumerate(self.nodes):
            ps = self.preds[v]
            vals.append(node(*[vals[u] for u in ps]) if ps else node(x))
        outs = [vals[v] for v in self.outputs]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)


class RandWire(nn.Module):
    def __init__(self, channels: int = 78, nodes: int = 32, k: int = 4, p: float = 0.75, seed: int = 0,
                 num_classes: int = 1000):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c))
        self.stage3 = _Stage(ws_dag(nodes // 2, k, p, seed), c, c)
        self.stage4 = _Stage(ws_dag(nodes, k, p, seed + 1), c, 2 * c)
        self.stage5 = _Stage(ws_dag(nodes, k, p, seed + 2), 2 * c, 4 * c)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4 * c, 1280, 1, bias=False), nn.BatchNorm2d(1280),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage5(self.stage4(self.stage3(x)))
        return self.fc(self.head(x))


def randwire(**kwargs) -> RandWire:
    """The benchmark configuration: C=78, N=32, WS(k=4, p=0.75), seed 0."""
    return RandWire(**kwargs)
