"""Small models that provoke runtime faults on purpose, for ``benchmarks/gpu_faults.py`` and the tests.

* ``noisy`` — adds fresh random noise to its output on every call, so ``hios run --check`` (which
  compares the plan's output with ``model(x)``) must fail with exit code 1 and the difference;
* ``host_sync`` — reads a value back to the host (``Tensor.item()``) inside ``forward``, which is not
  allowed while a CUDA graph is being captured, so ``hios run`` must fall back to stream mode with
  a warning saying why.

Use them through the model zoo as ``hios.testing.fault_models:noisy`` (or ``:host_sync``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["host_sync", "noisy"]


class _Noisy(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y + torch.randn_like(y)


class _HostSync(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.a = nn.Conv2d(3, channels, 3, padding=1)
        self.b = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = self.a(x)
        scale = y.abs().mean().item()  # a device-to-host copy: cannot be captured in a CUDA graph
        return self.b(y) * (scale * 0.0 + 1.0)


def noisy() -> nn.Module:
    return _Noisy()


def host_sync() -> nn.Module:
    return _HostSync()
