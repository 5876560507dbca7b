"""Device probing for the profiler: which device, its name, the library versions a profile records."""

from __future__ import annotations

import platform
import sys

from ..errors import HiosError
from ..optional import require
from .timing import cpu_name

__all__ = ["cuda_device_count", "default_kernels", "device_name", "library_versions", "resolve_device"]


def cuda_device_count() -> int:
    """The CUDA devices present (0 without CUDA)."""
    torch = require("torch", "the runtime")
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(device: str | None):
    """A torch.device; a CUDA device must exist."""
    torch = require("torch", "the profiler")
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HiosError(f"invalid device {device!r} (use cpu or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HiosError(f"device {device} asked for, but no CUDA device is available")
        idx = torch.cuda.current_device() if dev.index is None else dev.index
        if idx >= torch.cuda.device_count():
            raise HiosError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA device(s))")
        dev = torch.device("cuda", idx)
    elif dev.type != "cpu":
        raise HiosError(f"unsupported device {device!r} (use cpu or cuda:N)")
    return dev


def default_kernels(device) -> str:
    return "inductor" if str(device).startswith("cuda") else "eager"


def device_name(dev) -> str:
    torch = require("torch", "the profiler")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu: {cpu_name()}"


def library_versions() -> dict:
    from .. import __version__ as hios_version
    out = {"hios": hios_version, "python": platform.python_version()}
    for mod in ("torch", "torchvision", "timm", "triton"):
        m = sys.modules.get(mod)
        if m is None and mod == "torch":
            m = require("torch", "the profiler")
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out
