"""An out-of-memory fault as one line naming the model, input size and device.

Running out of memory is not a bug of hios but a request that does not fit: the CLI ends it with
exit code 2 and one line such as::

    hios run: error: out of memory: model nasnetalarge at 4096 px, batch 1 on cuda:0 while running
    the plan (CUDA out of memory. Tried to allocate 2.00 GiB ...); try a smaller --image-size or batch

:func:`describe` takes the model, size, batch and device from the command's arguments, or from the
plan file the command was given, and builds the line (:func:`hios.faults.is_out_of_memory` says
which exceptions are out of memory).  torch-free.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

def _first_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return text if len(text) <= 200 else text[:197] + "..."


def _plan_model(path) -> dict:
    """The ``model`` object of a plan file, or {} when it cannot be read (no new error here)."""
    try:
        with open(Path(path)) as f:
            d = json.load(f)
        m = d.get("model") if isinstance(d, dict) else None
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def _default_device(args) -> str:
    """What a command uses without --device: cuda:0 where torch sees a GPU, else cpu."""
    torch = sys.modules.get("torch")
    if getattr(args, "command", "") in ("run", "profile") and torch is not None and torch.cuda.is_available():
        return "cuda:0"
    return "cpu"


def context(args) -> str:
    """"model M at S px, batch B on DEVICE" from a command's arguments (and its plan file); for a
    command on a graph file (``hios simulate``), "graph FILE"."""
    info = _plan_model(args.plan) if getattr(args, "plan", None) else {}
    model = getattr(args, "model", None) or info.get("name")
    if model is None and getattr(args, "graph", None):
        return f"graph {args.graph}"
    size = getattr(args, "image_size", None) or info.get("image_size")
    batch = info.get("batch") or getattr(args, "batch", None) or 1
    device = getattr(args, "devices", None) or getattr(args, "device", None) or _default_device(args)
    size_s = f"{size} px" if size else "its default size"
    return f"model {model or '(not given)'} at {size_s}, batch {batch} on {device}"


def describe(exc: BaseException, args) -> str:
    """One line for an out-of-memory ``exc`` raised by a command run with ``args``."""
    what = _first_line(exc) or type(exc).__name__
    what = re.sub(r"^out of memory( on \S+)?:?\s*", "", what)  # the runtime's own prefix
    if getattr(args, "command", None) == "simulate" or (getattr(args, "graph", None) and not getattr(args, "model", None)):
        return f"out of memory: {context(args)} ({what}); try a smaller graph or fewer GPUs"
    return (f"out of memory: {context(args)} ({what}); try a smaller --image-size or batch, "
            "or more or larger devices")
