"""Checks of what a library call gives hios, before any capture: the arguments of
:func:`hios.optimize` / :func:`hios.load`, the example inputs, and the model's forward.

Steps:

1. :func:`check_arguments` — every argument has its documented type and range (``gpus`` an
   integer within :data:`hios.limits.MAX_GPUS`, ``algorithm`` a name or a sequence of names,
   ``choose`` an integer >= 0, flags booleans, …), each refused with a one-line
   :class:`~hios.errors.HiosError` naming the argument;
2. :func:`check_inputs` — the example inputs are a tensor or a tuple/list of tensors; an input
   that is itself a list, tuple or dict (a model called as ``model([a, b])`` or ``model({"x": a})``)
   is refused: the plan's inputs are the model's positional tensor arguments;
3. :func:`check_pure` — one reference call of the model (``torch.no_grad``, eval mode) tells whether
   its forward changes an input or a buffer in place, or draws random numbers (the CPU or CUDA
   random generator moved).  A plan computes a pure function of its inputs: a model that changes
   an input or buffer is refused (the change would be dropped); one that draws random numbers gets
   a warning (the draws are frozen into constants, so ``hios run``'s check will fail).  The call
   leaves no trace: inputs, buffers and generator states are restored.  A model that does not run
   is left to the capture, which names the cause.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Sequence

from ..errors import HiosError
from ..limits import check_gpus

__all__ = ["as_inputs", "check_arguments", "check_inputs", "check_pure"]


def as_inputs(example_inputs) -> tuple:
    """A model's positional inputs as a tuple: a tuple or list is several inputs, anything else one."""
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def _type_error(where: str, name: str, wanted: str, value) -> HiosError:
    return HiosError(f"{where}: {name} must be {wanted}, got {value!r} ({type(value).__name__})")


def _names(value) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, Sequence) and len(value) > 0 and all(isinstance(v, str) for v in value)


def check_arguments(where: str, *, gpus=1, algorithm="hios-lp", choose=0, devices=None, cost=None, link=None,
                    kernels=None, mode=None, window=None, streams=None, flags: dict | None = None) -> None:
    """Step 1: refuse, naming the argument, a value of the wrong type or out of range."""
    check_gpus(gpus, f"{where}: gpus")
    if not _names(algorithm):
        raise _type_error(where, "algorithm", "a name such as 'hios-lp', a comma list or a sequence of names",
                          algorithm)
    if not isinstance(choose, numbers.Integral) or isinstance(choose, bool):
        raise _type_error(where, "choose", "an integer >= 0", choose)
    if choose < 0:
        raise HiosError(f"{where}: choose must be >= 0 (0: keep the best predicted plan), got {choose}")
    if devices is not None and not _names(devices):
        raise _type_error(where, "devices", "a string such as 'cuda:0,cuda:1' or a sequence of device names",
                          devices)
    if cost is not None and not isinstance(cost, str) and not hasattr(cost, "__fspath__"):
        raise _type_error(where, "cost", "'profile', a GPU name or a profile file path", cost)
    for name, value in (("link", link), ("kernels", kernels), ("mode", mode)):
        if value is not None and not isinstance(value, str):
            raise _type_error(where, name, "a string", value)
    for name, value in (("window", window), ("streams", streams)):
        if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
            raise _type_error(where, name, "an integer", value)
    for name, value in (flags or {}).items():
        if not isinstance(value, bool):
            raise _type_error(where, name, "True or False", value)


def check_inputs(where: str, model, example_inputs) -> tuple:
    """Step 2: ``model`` is a module and ``example_inputs`` a tensor or a tuple/list of tensors (or
    other leaf values); returns the inputs as a tuple."""
    import torch
    if not isinstance(model, torch.nn.Module):
        raise HiosError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, dict):
        raise HiosError(f"{where}: example_inputs is a dict; give the model's positional inputs as a tensor or "
                        "a tuple of tensors (keyword inputs are not planned)")
    inputs = as_inputs(example_inputs)
    if not inputs:
        raise HiosError(f"{where}: example_inputs is empty; give the tensor(s) the model is called with")
    for k, x in enumerate(inputs):
        if isinstance(x, (list, tuple, dict)):
            raise HiosError(f"{where}: example input {k} is a {type(x).__name__}: hios plans models whose inputs "
                            "are tensors; make the model take each tensor as its own argument")
    if not any(isinstance(x, torch.Tensor) for x in inputs):
        raise HiosError(f"{where}: no example input is a tensor (got {', '.join(type(x).__name__ for x in inputs)})")
    return inputs


def _same(a, b) -> bool:
    import torch
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num()))
    return bool(torch.equal(a, b))


def check_pure(where: str, model, inputs: tuple) -> None:
    """Step 3: refuse a model whose forward changes an input or a buffer, or draws random numbers."""
    import torch
    tensors = [(k, x) for k, x in enumerate(inputs) if isinstance(x, torch.Tensor)]
    buffers = [(n, b) for n, b in model.named_buffers() if b is not None]
    cuda = any(x.is_cuda for _, x in tensors) or any(b.is_cuda for _, b in buffers) or \
        any(p.is_cuda for p in model.parameters())
    saved_in = [(x, x.detach().clone()) for _, x in tensors]
    saved_buf = [(b, b.detach().clone()) for _, b in buffers]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception:  # noqa: BLE001 - the capture names why a model does not run
        return
    finally:
        changed_in = [k for (k, x), (_, old) in zip(tensors, saved_in) if not _same(x.detach(), old)]
        changed_buf = [n for (n, b), (_, old) in zip(buffers, saved_buf) if not _same(b.detach(), old)]
        random = not torch.equal(torch.get_rng_state(), cpu_rng) or (
            cuda and any(not torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda_rng)))
        with torch.no_grad():
            for x, old in saved_in:
                x.copy_(old)
            for b, old in saved_buf:
                b.copy_(old)
        torch.set_rng_state(cpu_rng)
        if cuda:
            torch.cuda.set_rng_state_all(cuda_rng)
    if changed_in:
        raise HiosError(f"{where}: the model's forward changes its input(s) {changed_in} in place; a plan computes "
                        "a pure function of its inputs (clone the input in forward, or change it outside the model)")
    if changed_buf:
        shown = ", ".join(changed_buf[:3]) + (f" and {len(changed_buf) - 3} more" if len(changed_buf) > 3 else "")
        raise HiosError(f"{where}: the model's forward changes buffer(s) {shown} in place; a plan would freeze "
                        "them (put the model in a mode that does not update state)")
    if random:
        warnings.warn(f"{where}: the model's forward draws random numbers (torch.randn, dropout in training mode, "
                      "...); the plan freezes them into constants, so its output will differ from the model's",
                      stacklevel=3)
