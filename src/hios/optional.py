"""Optional dependencies: torch, torchvision and timm are extras, imported only where needed.
:func:`require` imports one or says, in one line, which extra to install."""

from __future__ import annotations

import importlib

from .errors import HiosError

__all__ = ["EXTRAS", "import_failed", "missing", "require"]

#: The extra that provides each optional module.
EXTRAS = {"torch": "torch", "torchvision": "vision", "timm": "timm", "ortools": "optimal"}


def missing(exc: ImportError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` (or its top-level package) is not installed — not that
    it is installed and failed to load (out of memory, a broken library)."""
    top = module.split(".")[0]
    return isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top


def import_failed(exc: BaseException, module: str, what: str) -> BaseException:
    """What to raise when importing ``module`` for ``what`` failed: "needs X: pip install" only when
    it is missing; a MemoryError when loading it ran out of memory; else a one-line HiosError."""
    top = module.split(".")[0]
    if isinstance(exc, ImportError) and missing(exc, module):
        return HiosError(f"{what} needs {top}: pip install 'hios[{EXTRAS.get(top, 'torch')}]'")
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if isinstance(exc, MemoryError) or any(m in text.lower() for m in ("memory", "failed to map segment")):
        return MemoryError(f"loading {top} ran out of memory ({text})")
    return HiosError(f"{what}: {top} is installed but cannot be imported ({type(exc).__name__}: {text})")


def require(module: str, what: str):
    """Import ``module`` for ``what`` (e.g. "GPU timing"), or raise a one-line HiosError (a
    MemoryError when loading it ran out of memory)."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError, MemoryError) as e:
        raise import_failed(e, module, what) from None
