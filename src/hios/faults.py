"""Out-of-memory faults: :func:`is_out_of_memory` recognises the exception (``MemoryError``,
``torch.OutOfMemoryError``, the CPU allocator's ``RuntimeError``, or a HiosError the runtime
already made of one).  Running out of memory is not a bug of hios but a request that does not fit;
the CLI turns it into one line naming the model, input size and device (:mod:`hios.cli.oom`).
torch-free.
"""

from __future__ import annotations

from .errors import HiosError

__all__ = ["is_out_of_memory"]

_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, HiosError):  # made by the runtime from a torch OutOfMemoryError
        return str(exc).startswith("out of memory")
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(m in text for m in _MARKERS)
    return False
