"""Logical devices: which physical device runs each GPU of a plan.

A plan for N GPUs runs on a list of N device names; several logical devices may share one
physical device (``cuda:0,cuda:0`` or ``cpu,cpu``), in which case they share its memory and
exchange values without copies.  Parsing is torch-free; :func:`check_devices` asks torch whether
the devices exist.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import HiosError, option

__all__ = ["logical_devices", "parse_devices", "used_gpus"]


def parse_devices(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"cuda:0,cuda:0"`` or a list of names -> normalised names (``cuda`` -> ``cuda:0``)."""
    if spec is None:
        return None
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    if not items or any(not s for s in items):
        raise HiosError(f"invalid device list {spec!r}: give names like cuda:0,cuda:1 or cpu,cpu")
    out = []
    for s in items:
        low = s.lower()
        if low == "cpu":
            out.append("cpu")
        elif low == "cuda":
            out.append("cuda:0")
        elif low.startswith("cuda:") and low[5:].isdigit():
            out.append(f"cuda:{int(low[5:])}")
        else:
            raise HiosError(f"unsupported device {s!r}: use cpu or cuda:<index>")
    if len({d.split(":")[0] for d in out}) > 1:
        raise HiosError(f"devices {','.join(out)} mix CPU and CUDA; use one kind")
    return out


def used_gpus(stages: Sequence[Sequence]) -> int:
    """1 + the index of the last GPU of a schedule that runs any operator."""
    return max((g + 1 for g, sts in enumerate(stages) if any(len(st) for st in sts)), default=1)


def logical_devices(devices: Sequence[str] | None, plan_gpus: int, used: int, cuda_count: int) -> list[str]:
    """The device of each logical GPU; ``plan_gpus`` GPUs in the plan, the first ``used`` of them run
    operators, ``cuda_count`` CUDA devices exist.  Errors name the mismatch."""
    if devices is None:
        if cuda_count == 0:
            return ["cpu"] * used
        if used > cuda_count:
            raise HiosError(f"the plan needs {used} GPUs but this machine has {cuda_count}; map its logical "
                            f"devices onto fewer, e.g. {option('devices', ','.join(['cuda:0'] * used))}")
        return [f"cuda:{g}" for g in range(used)]
    if len(devices) > plan_gpus:
        raise HiosError(f"{len(devices)} logical devices requested but the plan has only {plan_gpus} GPU(s)")
    if len(devices) < used:
        raise HiosError(f"the plan runs operators on {used} GPUs but only {len(devices)} device(s) were given "
                        f"({','.join(devices)})")
    for d in devices:
        if d.startswith("cuda:") and int(d[5:]) >= cuda_count:
            have = f"only cuda:0..cuda:{cuda_count - 1}" if cuda_count else "no CUDA device"
            raise HiosError(f"device {d} does not exist: this machine has {have}")
    return list(devices)
