"""A small random-DAG network, for testing runtimes on a model with many parallel branches.

:class:`RandomDAGNet` turns a layered random DAG of :func:`hios.generate.layered_dag` into a
network: operator *i* sums the outputs of its predecessors (the source reads the image), applies
a small convolution (3x3 or 1x1, ``channels`` channels, padding keeps the spatial size) and a ReLU;
the sink's output is average-pooled into a ``batch x channels`` tensor.  The structure is fixed at
construction, so ``torch.fx.symbolic_trace`` can trace it.  Use it through the model zoo as
``hios.testing.dist_models:random_dag``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..generate import layered_dag

__all__ = ["RandomDAGNet", "random_dag"]


class RandomDAGNet(nn.Module):
    def __init__(self, nodes: int = 12, edges: int = 18, layers: int = 3, channels: int = 4, seed: int = 0,
                 in_channels: int = 3):
        super().__init__()
        g = layered_dag(nodes, edges, layers, 0.5, seed)
        self.order = list(g.topo)
        self.preds = [list(p) for p in g.preds]
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if not self.preds[i] else channels, channels, 3 if i % 2 == 0 else 1,
                      padding=1 if i % 2 == 0 else 0)
            for i in range(len(g.ops)))

    def forward(self, x):
        out = {}
        for i in self.order:
            if self.preds[i]:
                h = out[self.preds[i][0]]
                for p in self.preds[i][1:]:
                    h = h + out[p]
            else:
                h = x
            out[i] = torch.relu(self.convs[i](h))
        sink = self.order[-1]
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out[sink], 1), 1)


def random_dag(image_size: int = 32, batch: int = 1, **kwargs) -> RandomDAGNet:
    """Zoo factory: a seeded :class:`RandomDAGNet` (random weights, eval mode)."""
    torch.manual_seed(kwargs.pop("weight_seed", 0))
    return RandomDAGNet(**kwargs).eval()
