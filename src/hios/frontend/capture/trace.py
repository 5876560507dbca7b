"""Step 1 of :func:`~hios.frontend.capture.capture`: trace the model with ``torch.fx.symbolic_trace``, else
``torch.export``; when both fail, an error naming the cause."""

from __future__ import annotations

import traceback

import torch
import torch.fx
from torch import nn

from ...errors import HiosError
from ...faults import is_out_of_memory


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def _failing_module(exc: BaseException, model: nn.Module) -> str:
    """Qualified name and class of the innermost module of ``model`` whose forward was running
    when ``exc`` was raised ("" when none is found)."""
    names = {id(m): n for n, m in model.named_modules()}
    found = ""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        obj = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
        if isinstance(obj, nn.Module) and id(obj) in names:
            n = names[id(obj)]
            found = f"{n or '<root>'} ({type(obj).__name__})"
    return found


def _describe(exc: BaseException, model: nn.Module) -> str:
    where = _failing_module(exc, model)
    return (f"in module {where}: " if where else "") + f"{type(exc).__name__}: {_first_line(exc)}"


def _shapes(inputs: tuple) -> str:
    return ", ".join(str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__ for x in inputs)


def _trace(model: nn.Module, inputs: tuple, name: str) -> tuple[torch.fx.GraphModule, str, str]:
    """(graph module, method, why symbolic_trace was not used or "")."""
    try:
        return torch.fx.symbolic_trace(model), "symbolic_trace", ""
    except Exception as e:  # tracing failures come as many exception types
        why = _describe(e, model)
    return _export(model, inputs, name, why), "export", why


def _export(model: nn.Module, inputs: tuple, name: str, sym_why: str) -> torch.fx.GraphModule:
    try:
        ep = torch.export.export(model, inputs, strict=False)
        return ep.module()
    except Exception as e:
        exp_why = _describe(e, model)
    _check_runs(model, inputs, name)
    raise HiosError(f"cannot capture {name}: torch.fx.symbolic_trace failed ({sym_why}) and "
                    f"torch.export failed ({exp_why})")


def _check_runs(model: nn.Module, inputs: tuple, name: str) -> None:
    """Raise a HiosError naming the cause when the model itself does not run on ``inputs``."""
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as e:
        if is_out_of_memory(e):  # not a model that does not run: reported as out of memory
            raise
        raise HiosError(f"{name} does not run on input(s) of shape {_shapes(inputs)}: "
                        f"{_describe(e, model)}") from None
