"""PyTorch front end: capture a model as an operator graph (:mod:`.capture`), build runnable
segments of it (:mod:`.segments`), a model zoo (:mod:`.zoo`) and an analytic cost model
(:mod:`.analytic`).  Without torch installed only :mod:`.analytic` is usable."""

from importlib.util import find_spec

if find_spec("torch") is not None:
    from .capture import Captured, capture
    from .segments import Segment, assemble_output, build_segment, output_names, run_by_operators

    __all__ = ["Captured", "Segment", "assemble_output", "build_segment", "capture", "output_names",
               "run_by_operators"]
