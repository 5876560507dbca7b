"""Optional dependencies: torch, torchvision and timm are extras, imported only where needed.
:func:`require` imports one or says, in one line, which extra to install."""

from __future__ import annotations

import importlib

from .errors import HiosError

__all__ = ["EXTRAS", "require"]

#: The extra that provides each optional module.
EXTRAS = {"torch": "torch", "torchvision": "vision", "timm": "timm", "ortools": "optimal"}


def require(module: str, what: str):
    """Import ``module`` for ``what`` (e.g. "GPU timing"), or raise a one-line HiosError."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.split(".")[0], "torch")
        raise HiosError(f"{what} needs {module.split('.')[0]}: pip install 'hios[{extra}]'") from None
