"""hios: hierarchical inter-operator scheduling of DAG-structured neural networks over GPUs and streams.

Layers, each in its own module: graph model (:mod:`hios.graph`, :mod:`hios.formats`,
:mod:`hios.generate`) → cost model (:mod:`hios.machine`, :mod:`hios.costmodel`) → schedulers
(:mod:`hios.schedulers`) → simulator (:mod:`hios.simulator`) → PyTorch capture/profiler
(:mod:`hios.frontend`) → runtime (:mod:`hios.runtime`) → CLI (:mod:`hios.cli`).
"""

from .bounds import LowerBounds, critical_path, lower_bounds
from .costmodel import HIOSStageModel, MeasuredStageModel
from .errors import HiosError
from .formats import load_graph, save_graph
from .generate import layered_dag
from .graph import Edge, Graph, GraphError, Operator
from .machine import LINK_PRESETS, Link, Machine
from .schedule import Schedule, load_schedule
from .schedulers import schedule
from .simulator import ScheduleError, SimResult, Simulator, simulate

__version__ = "0.1.0"


def __getattr__(name: str):
    """``hios.capture`` imports torch only when first used (torch is an optional extra)."""
    if name == "capture":
        try:
            from .frontend.capture import capture
        except ImportError as e:
            raise HiosError(f"hios.capture needs torch: pip install hios[torch] ({e})") from None
        return capture
    if name == "compile":
        try:
            from .runtime import compile
        except ImportError as e:
            raise HiosError(f"hios.compile needs torch: pip install hios[torch] ({e})") from None
        return compile
    raise AttributeError(f"module 'hios' has no attribute {name!r}")

__all__ = [
    "Edge", "Graph", "GraphError", "HIOSStageModel", "HiosError", "LINK_PRESETS", "Link", "LowerBounds",
    "Machine", "MeasuredStageModel", "Operator", "Schedule", "ScheduleError", "SimResult", "Simulator",
    "critical_path", "layered_dag", "load_graph", "load_schedule", "lower_bounds", "save_graph",
    "schedule", "simulate",
]
