"""hios: hierarchical inter-operator scheduling of DAG-structured neural networks over GPUs and streams.

Stages, in pipeline order, each importing only those before it: graph model (:mod:`hios.graph`,
:mod:`hios.formats`, :mod:`hios.generate`, :mod:`hios.machine`) → PyTorch capture
(:mod:`hios.frontend`) → cost model (:mod:`hios.cost`) → schedulers and simulator
(:mod:`hios.schedulers`, :mod:`hios.simulator`) → plan → program (:mod:`hios.program`) → runtime
(:mod:`hios.runtime`: ``local``, ``distributed``, ``measure``) → library front door
(:mod:`hios.pipeline`) → CLI (:mod:`hios.cli`).
"""

from .bounds import LowerBounds, critical_path, lower_bounds
from .cost.costmodel import HIOSStageModel, MeasuredStageModel
from .errors import HiosError
from .formats import load_graph, save_graph
from .generate import layered_dag
from .graph import Edge, Graph, GraphError, Operator
from .machine import LINK_PRESETS, Link, Machine
from .options import CostOptions, RunOptions, ScheduleOptions, TimingOptions
from .plan import Plan, load_plan
from .schedule import Schedule, load_schedule
from .schedulers import schedule
from .simulator import ScheduleError, SimResult, Simulator, simulate

__version__ = "0.1.0"


#: The parts of the API that need torch, imported when first used (torch is an optional extra).
_TORCH_API = {"optimize": "pipeline", "load": "pipeline", "plan_model": "pipeline", "Optimized": "pipeline",
              "capture": "frontend.capture", "compile": "runtime.local.executor"}


def _needs_torch(name: str, message: str):
    """What ``hios.<name>`` is without torch: a callable that raises :class:`HiosError` saying so
    (an attribute that exists, so that ``hasattr`` and ``from hios import *`` keep working)."""
    def missing(*args, **kwargs):
        raise HiosError(message)
    missing.__name__ = missing.__qualname__ = name
    missing.__doc__ = message
    return missing


def __getattr__(name: str):
    if name not in _TORCH_API:
        raise AttributeError(f"module 'hios' has no attribute {name!r}")
    import importlib
    from importlib.util import find_spec
    if find_spec("torch") is None:
        return _needs_torch(name, f"hios.{name} needs torch: pip install 'hios[torch]'")
    try:
        module = importlib.import_module(f".{_TORCH_API[name]}", __name__)
    except (ImportError, OSError, MemoryError) as e:
        from .optional import import_failed, missing
        if isinstance(e, ImportError) and missing(e, "torch"):
            return _needs_torch(name, f"hios.{name} needs torch: pip install 'hios[torch]' ({e})")
        raise import_failed(e, "torch", f"hios.{name}") from None
    return getattr(module, name)

__all__ = [
    "CostOptions", "Edge", "Graph", "GraphError", "HIOSStageModel", "HiosError", "LINK_PRESETS", "Link",
    "LowerBounds", "Machine", "MeasuredStageModel", "Operator", "Optimized", "Plan", "RunOptions", "Schedule",
    "ScheduleError", "ScheduleOptions", "SimResult", "Simulator", "TimingOptions", "capture", "compile",
    "critical_path", "layered_dag", "load", "load_graph", "load_plan", "load_schedule", "lower_bounds",
    "optimize", "plan_model", "save_graph", "schedule", "simulate",
]
