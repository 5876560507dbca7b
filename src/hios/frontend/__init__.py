"""PyTorch front end — the first stage after the graph model (graph → **capture** → cost →
schedulers/simulator → program → runtime → pipeline → CLI): capture a model as an operator graph
(:mod:`.capture`), build runnable segments of it (:mod:`.segments`), a model zoo (:mod:`.zoo`,
:mod:`.randwire`) and the checks of a model given to the library (:mod:`.model_checks`).  Capture
and segments need torch."""

from importlib.util import find_spec

if find_spec("torch") is not None:
    from .capture import Captured, capture
    from .segments import Segment, assemble_output, build_segment, output_names, run_by_operators

    __all__ = ["Captured", "Segment", "assemble_output", "build_segment", "capture", "output_names",
               "run_by_operators"]
