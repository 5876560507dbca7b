"""Steps 3-4 of :func:`~hios.frontend.capture.capture`: one run over the graph recording shapes, bytes and
FLOPs per node, then shape/attribute and constant nodes folded, dead attributes pruned."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree

from ...errors import HiosError
from .nodes import _COMPUTE, _ELEMENTWISE, _NOT_FOLDABLE, _RANDOM, _base_name, _kind
from .trace import _first_line
from .clean import _get_attr


@dataclass
class _NodeInfo:
    shapes: list[list[int]]
    dtypes: list[str]
    nbytes: int
    has_tensor: bool
    flops: int | None = None
    tensor_flops: int = 0      # FLOPs of matrix products/convolutions (what tensor cores run)
    value: Any = None          # the value, kept for non-tensor nodes only


def _tensors(v) -> list[torch.Tensor]:
    return [x for x in pytree.tree_leaves(v) if isinstance(x, torch.Tensor)]


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, name: str, bar=None):
        super().__init__(gm)
        self.info: dict[str, _NodeInfo] = {}
        self.model_name = name
        self.bar = bar

    def run_node(self, n: torch.fx.Node):
        from torch.utils.flop_counter import FlopCounterMode

        if self.bar is not None:
            self.bar.update()
        if n.op in ("placeholder", "output"):
            v = super().run_node(n)
            if n.op == "placeholder":
                self.info[n.name] = self._summary(v)
            return v
        if n.op == "get_attr":
            return super().run_node(n)
        try:
            with FlopCounterMode(display=False) as fc:
                v = super().run_node(n)
        except Exception as e:
            args = [tuple(self.env[a].shape) for a in n.all_input_nodes
                    if isinstance(self.env.get(a), torch.Tensor)]
            raise HiosError(f"{self.model_name}: node {n.name!r} ({_base_name(self.module, n)}) fails on "
                            f"inputs of shape {args}: {type(e).__name__}: {_first_line(e)}") from None
        info = self._summary(v)
        counted = int(fc.get_total_flops())
        info.tensor_flops = counted
        info.flops = counted if counted > 0 else self._flops(n, v)
        self.info[n.name] = info
        return v

    def _summary(self, v) -> _NodeInfo:
        ts = _tensors(v)
        return _NodeInfo([list(t.shape) for t in ts], [str(t.dtype).replace("torch.", "") for t in ts],
                         sum(t.numel() * t.element_size() for t in ts), bool(ts), value=None if ts else v)

    def _flops(self, n: torch.fx.Node, v) -> int | None:
        kind = _kind(_base_name(self.module, n))
        out = sum(t.numel() for t in _tensors(v))
        if kind in _ELEMENTWISE:
            return out
        if kind in ("pool", "reduce"):
            ins = [self.env[a] for a in n.all_input_nodes if isinstance(self.env.get(a), torch.Tensor)]
            return ins[0].numel() if ins else out
        if kind in ("concat", "reshape", "pad"):
            return 0
        return None


def _record(gm: torch.fx.GraphModule, inputs: tuple, name: str, progress: bool) -> dict[str, _NodeInfo]:
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(gm.graph.nodes), desc=f"{name}: shapes and FLOPs", unit="node", file=sys.stderr,
                   leave=False)
    rec = _Recorder(gm, name, bar)
    try:
        with torch.no_grad():
            rec.run(*inputs)
    finally:
        if bar is not None:
            bar.close()
    return rec.info


def _literal(v):
    if isinstance(v, torch.Size):
        return tuple(int(x) for x in v)
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return type(v)(_literal(x) for x in v)
    return v


def _fold_constants(gm: torch.fx.GraphModule, info: dict[str, _NodeInfo]) -> None:
    """Shape/attribute nodes become literals (not values read from tensor data, such as
    ``x.item()``, nor anything computed from them); tensor nodes that then read no model input (only
    parameters and literals, e.g. ``torch.ones(x.shape, device=x.device)``) become attributes, so
    they move with the module to whatever device runs it."""
    interp = torch.fx.Interpreter(gm)
    k = 0
    dynamic: set[torch.fx.Node] = set()  # values read from tensor data (x.item() and what follows from it)
    for node in list(gm.graph.nodes):
        if node.op not in _COMPUTE or node.name not in info:
            continue
        ni = info[node.name]
        base = _base_name(gm, node)
        if (base in _NOT_FOLDABLE or any(r in base for r in _RANDOM)
                or (not ni.has_tensor and any(a in dynamic for a in node.all_input_nodes))):
            dynamic.add(node)
            continue
        if not ni.has_tensor:
            value = _literal(ni.value)
            for user in list(node.users):
                user.args = torch.fx.node.map_arg(user.args, lambda a: value if a is node else a)
                user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda a: value if a is node else a)
            gm.graph.erase_node(node)
            continue
        if not all(a.op == "get_attr" for a in node.all_input_nodes):
            continue
        for a in node.all_input_nodes:
            interp.env[a] = _get_attr(gm, a.target)
        with torch.no_grad():
            value = interp.run_node(node)
        if not isinstance(value, torch.Tensor):
            continue
        while hasattr(gm, f"hios_const_{k}"):
            k += 1
        attr = f"hios_const_{k}"
        gm.register_buffer(attr, value.detach())
        with gm.graph.inserting_before(node):
            new = gm.graph.get_attr(attr)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)


def _prune_attributes(gm: torch.fx.GraphModule) -> None:
    """Drop submodules, parameters and buffers that no node uses any more."""
    gm.delete_all_unused_submodules()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    called = [n.target + "." for n in gm.graph.nodes if n.op == "call_module"]
    for kind in ("_parameters", "_buffers"):
        for mod_name, mod in list(gm.named_modules()):
            if any((mod_name + ".").startswith(c) for c in called):
                continue
            for attr in list(getattr(mod, kind)):
                fqn = f"{mod_name}.{attr}" if mod_name else attr
                if fqn not in used:
                    del getattr(mod, kind)[attr]
