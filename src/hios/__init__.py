"""hios: hierarchical inter-operator scheduling of DAG-structured neural networks over GPUs and streams.

Layers, each in its own module: graph model (:mod:`hios.graph`, :mod:`hios.formats`,
:mod:`hios.generate`) → cost model (:mod:`hios.machine`, :mod:`hios.cost.costmodel`) → schedulers
(:mod:`hios.schedulers`) → simulator (:mod:`hios.simulator`) → PyTorch capture/profiler
(:mod:`hios.frontend`) → runtime (:mod:`hios.runtime`) → CLI (:mod:`hios.cli`).
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


def __getattr__(name: str):
    if name not in _TORCH_API:
        raise AttributeError(f"module 'hios' has no attribute {name!r}")
    import importlib
    try:
        module = importlib.import_module(f".{_TORCH_API[name]}", __name__)
    except (ImportError, OSError, MemoryError) as e:
        from .optional import import_failed, missing
        if isinstance(e, ImportError) and missing(e, "torch"):
            raise HiosError(f"hios.{name} needs torch: pip install 'hios[torch]' ({e})") from None
        raise import_failed(e, "torch", f"hios.{name}") from None
    return getattr(module, name)

__all__ = [
    "CostOptions", "Edge", "Graph", "GraphError", "HIOSStageModel", "HiosError", "LINK_PRESETS", "Link",
    "LowerBounds", "Machine", "MeasuredStageModel", "Operator", "Optimized", "Plan", "RunOptions", "Schedule",
    "ScheduleError", "ScheduleOptions", "SimResult", "Simulator", "TimingOptions", "capture", "compile",
    "critical_path", "layered_dag", "load", "load_graph", "load_plan", "load_schedule", "lower_bounds",
    "optimize", "plan_model", "save_graph", "schedule", "simulate",
]
