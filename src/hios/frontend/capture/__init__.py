"""Capture a PyTorch model as a hios operator graph whose operators can be run later.

Steps of :func:`capture`, each pass in its module (:mod:`.trace`, :mod:`.clean`, :mod:`.record`,
:mod:`.operators`; node kinds in :mod:`.nodes`):

1. Trace: ``torch.fx.symbolic_trace``; when that fails (data-dependent control flow, …) or the
   traced module does not run, ``torch.export.export(model, inputs, strict=False).module()``.
   When both fail the model is run eagerly once: a model that does not run on the inputs gets
   an error naming that cause (e.g. an image too small), otherwise the error names the module
   where tracing and export failed and why.
2. Clean the fx graph: drop export's guard/assert nodes, turn in-place operations into
   out-of-place ones (so that operators placed on different GPUs or streams never mutate a value
   another operator reads; one that writes through a view is refused with a clear error), drop eval-mode identities (dropout, ``nn.Identity``), and fold
   eval-mode BatchNorm into the convolution that feeds it (``nn.BatchNorm*d`` modules after
   symbolic tracing; ``aten.batch_norm`` / ``aten._native_batch_norm_legit_no_training`` /
   ``aten.native_batch_norm`` after export), and compute a repeated pure call once (the same
   activation, pad, pool or arithmetic on the same inputs: NASNet's branches each apply ReLU to
   a shared input).
3. Run the graph once on the example inputs (real tensors, ``torch.no_grad``) recording for every
   node its output shapes, dtypes and bytes and its FLOPs (``FlopCounterMode`` for
   convolutions and matrix products, element counts for element-wise ops and pools).
4. Fold shape/attribute nodes (``x.size()``, ``x.shape[2]``, ``x.dtype``…) into literals, then
   tensor nodes that read no model input (only parameters and literals) into constant attributes,
   then drop dead code and attributes nothing uses.
5. Group nodes into operators: a ``getitem`` on a node's tuple output joins that node; then
   chains are fused: a group whose only consumer group has it as its only producer group
   absorbs that consumer (conv→relu→pool…).  Then the cheap joins are gathered, so that a
   compiler fuses them as the whole-model one does: a lone activation read by several groups
   joins its only producer, and a group of element-wise, pad and pool nodes whose value only
   one group reads joins that group (a pool only once joined to an element-wise join), e.g. a
   NASNet cell's adds and pools with the concatenation that reads them.  Placeholders, ``get_attr`` and ``output`` are
   not operators.  An operator is named after its first node: the fx name after symbolic
   tracing, ``<module path>.<op>`` after export.
6. Emit a :class:`~hios.graph.Graph` (operators in topological order, costs 0) whose edges carry
   the bytes of the producer's values the consumer reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from ...errors import HiosError
from ...graph import Graph
from ..model_checks import as_inputs
from .nodes import _COMPUTE
from .trace import _check_runs, _export, _trace
from .clean import _drop_guards, _drop_identities, _fold_bn_aten, _fold_bn_modules, _functionalize, _share_duplicates
from .record import _NodeInfo, _fold_constants, _prune_attributes, _record
from .operators import _operators


@dataclass
class Captured:
    graph: Graph                  # operators in a topological order; costs 0.0 until profiled
    gm: torch.fx.GraphModule      # eval mode, BatchNorm folded, parameters/buffers as attributes
    example_inputs: tuple         # what it was captured with (shapes/dtypes define the plan)
    input_names: list[str]        # fx placeholder node names, in call order
    method: str                   # "symbolic_trace" or "export"


def capture(model: nn.Module, example_inputs, name: str | None = None, progress: bool = False) -> Captured:
    """Capture ``model`` as an operator graph (see the module docstring for the steps).

    ``model`` is put in eval mode and otherwise left untouched (folded weights and out-of-place
    copies of modules live in the returned ``gm``).  ``progress`` shows a progress bar (stderr) over
    the run that records shapes and FLOPs.

    Examples
    --------
    >>> import torch, hios
    >>> from hios.testing.dist_models import random_dag
    >>> captured = hios.capture(random_dag(image_size=16), torch.randn(1, 3, 16, 16))
    >>> captured.method, len(captured.graph) > 1
    ('symbolic_trace', True)
    """
    if not isinstance(model, nn.Module):
        raise HiosError(f"capture expects a torch.nn.Module, got {type(model).__name__}")
    inputs = as_inputs(example_inputs)
    name = name or type(model).__name__
    model.eval()
    gm, method, why = _trace(model, inputs, name)
    try:
        info = _prepare(gm, inputs, name, progress)
    except HiosError:
        if method == "export":
            _check_runs(model, inputs, name)
            raise
        _check_runs(model, inputs, name)  # the model itself runs: the traced module is at fault
        why = "the symbolically traced module does not run"
        gm, method = _export(model, inputs, name, why), "export"
        info = _prepare(gm, inputs, name, progress)
    graph = _operators(gm, info, name, method)
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    meta = {"capture": method,
            "inputs": [{"name": p, "shape": info[p].shapes[0] if info[p].shapes else None,
                        "dtype": info[p].dtypes[0] if info[p].dtypes else None} for p in placeholders],
            "fx_nodes": sum(1 for n in gm.graph.nodes if n.op in _COMPUTE)}
    if why:
        meta["symbolic_trace_error"] = why
    graph = Graph(graph.ops, graph.edges, name, meta)
    return Captured(graph, gm, inputs, placeholders, method)


def _prepare(gm: torch.fx.GraphModule, inputs: tuple, name: str, progress: bool = False) -> dict[str, _NodeInfo]:
    try:
        gm.eval()
    except NotImplementedError:  # exported modules refuse eval(); they were exported in eval mode
        pass
    _drop_guards(gm)
    _functionalize(gm, name)
    _drop_identities(gm)
    _fold_bn_modules(gm)
    _fold_bn_aten(gm)
    _share_duplicates(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    n_inputs = sum(1 for n in gm.graph.nodes if n.op == "placeholder")
    if n_inputs != len(inputs):
        raise HiosError(f"{name}: the captured graph takes {n_inputs} input(s) but {len(inputs)} were given")
    info = _record(gm, inputs, name, progress)
    _fold_constants(gm, info)
    gm.graph.eliminate_dead_code()
    _prune_attributes(gm)
    gm.graph.lint()
    gm.recompile()
    if not any(n.op in _COMPUTE for n in gm.graph.nodes):
        raise HiosError(f"{name}: the captured graph has no operators")
    return info


__all__ = ["Captured", "capture"]
