"""Capture a PyTorch model as a hios operator graph whose operators can be run later.

Steps of :func:`capture`:

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
   ``aten.native_batch_norm`` after export).
3. Run the graph once on the example inputs (real tensors, ``torch.no_grad``) recording for every
   node its output shapes, dtypes and bytes and its FLOPs (``FlopCounterMode`` for
   convolutions and matrix products, element counts for element-wise ops and pools).
4. Fold shape/attribute nodes (``x.size()``, ``x.shape[2]``, ``x.dtype``…) into literals, then
   tensor nodes that read no model input (only parameters and literals) into constant attributes,
   then drop dead code and attributes nothing uses.
5. Group nodes into operators: a ``getitem`` on a node's tuple output joins that node; then
   chains are fused: a group whose only consumer group has it as its only producer group
   absorbs that consumer (conv→relu→pool…).  Placeholders, ``get_attr`` and ``output`` are
   not operators.  An operator is named after its first node: the fx name after symbolic
   tracing, ``<module path>.<op>`` after export.
6. Emit a :class:`~hios.graph.Graph` (operators in topological order, costs 0) whose edges carry
   the bytes of the producer's values the consumer reads.
"""

from __future__ import annotations

import copy
import heapq
import inspect
import operator
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch import nn

from ...errors import HiosError
from ...faults import is_out_of_memory
from ...graph import Edge, Graph, Operator
from ..model_checks import as_inputs


@dataclass
class Captured:
    graph: Graph                  # operators in a topological order; costs 0.0 until profiled
    gm: torch.fx.GraphModule      # eval mode, BatchNorm folded, parameters/buffers as attributes
    example_inputs: tuple         # what it was captured with (shapes/dtypes define the plan)
    input_names: list[str]        # fx placeholder node names, in call order
    method: str                   # "symbolic_trace" or "export"


# ---------------------------------------------------------------------------------------------
# node classification


_VIEW = {"view", "reshape", "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "expand",
         "expand_as", "getitem", "chunk", "split", "split_with_sizes", "unbind", "alias", "detach",
         "contiguous", "_unsafe_view", "view_as", "unflatten", "narrow", "select", "slice", "identity",
         "dropout", "feature_dropout", "alpha_dropout", "dropout1d", "dropout2d", "dropout3d", "flatten_using_ints"}
_KINDS: list[tuple[str, set[str]]] = [
    ("conv", {"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d",
              "conv_transpose2d", "conv_transpose3d", "convtranspose1d", "convtranspose2d", "convtranspose3d"}),
    ("matmul", {"linear", "addmm", "mm", "bmm", "matmul", "baddbmm", "einsum", "bilinear",
                "scaled_dot_product_attention", "multiheadattention"}),
    ("bn", {"batch_norm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "_native_batch_norm_legit_no_training",
            "native_batch_norm", "_native_batch_norm_legit"}),
    ("norm", {"layer_norm", "group_norm", "layernorm", "groupnorm", "instance_norm", "instancenorm2d",
              "native_layer_norm", "native_group_norm", "localresponsenorm", "local_response_norm"}),
    ("pool", {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
              "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
              "adaptive_max_pool2d", "max_pool2d_with_indices", "maxpool1d", "maxpool2d", "maxpool3d",
              "avgpool1d", "avgpool2d", "avgpool3d", "adaptiveavgpool1d", "adaptiveavgpool2d",
              "adaptiveavgpool3d", "adaptivemaxpool2d"}),
    ("concat", {"cat", "concat", "concatenate", "stack", "hstack", "vstack"}),
    ("relu", {"relu", "relu6", "hardtanh", "leaky_relu", "leakyrelu", "threshold"}),
    ("activation", {"sigmoid", "tanh", "gelu", "silu", "hardswish", "hardsigmoid", "softmax", "log_softmax",
                    "elu", "selu", "mish", "softplus", "prelu", "swish"}),
    ("add", {"add", "iadd", "sub", "rsub", "isub"}),
    ("mul", {"mul", "imul", "div", "truediv", "true_divide", "floordiv", "pow", "neg", "exp", "log",
             "sqrt", "rsqrt", "reciprocal", "clamp", "clip", "abs", "where", "masked_fill"}),
    ("reduce", {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod"}),
    ("pad", {"pad", "constant_pad_nd", "zeropad2d", "constantpad2d", "reflectionpad2d", "replicationpad2d"}),
    ("reshape", _VIEW),
]
_KIND_OF = {name: kind for kind, names in _KINDS for name in names}
#: The kind a fused operator takes: its highest-ranked member.
_RANK = ["conv", "matmul", "pool", "concat", "add", "mul", "norm", "bn", "reduce", "relu", "activation",
         "pad", "generic", "reshape"]
_ELEMENTWISE = {"add", "mul", "relu", "activation", "bn", "norm"}
_NOT_FOLDABLE = {"item", "tolist", "_local_scalar_dense", "numpy"}
_COMPUTE = ("call_function", "call_method", "call_module")
_RANDOM = ("rand", "normal", "bernoulli", "dropout", "multinomial", "uniform")


def _base_name(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    """Lower-case operation name of a node: module class, method, function or aten op name."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__.lower()
    if node.op == "call_method":
        return str(node.target)
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        return t.overloadpacket.__name__
    if isinstance(t, torch._ops.OpOverloadPacket):
        return t.__name__
    return getattr(t, "__name__", str(t)).lower()


def _kind(name: str) -> str:
    if name in _KIND_OF:
        return _KIND_OF[name]
    stripped = name.rstrip("_")
    return _KIND_OF.get(stripped, "generic")


# ---------------------------------------------------------------------------------------------
# tracing


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def _failing_module(exc: BaseException, model: nn.Module) -> str:
    """Qualified name and class of the innermost module of ``model`` whose forward was running
    when ``exc`` was raised ("" when none is found)."""
    names = {id(m): n for n, m in model.named_modules()}
    found = ""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        obj = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
        if isinstance(obj, nn.Module) and id(obj) in names:
            n = names[id(obj)]
            found = f"{n or '<root>'} ({type(obj).__name__})"
    return found


def _describe(exc: BaseException, model: nn.Module) -> str:
    where = _failing_module(exc, model)
    return (f"in module {where}: " if where else "") + f"{type(exc).__name__}: {_first_line(exc)}"


def _shapes(inputs: tuple) -> str:
    return ", ".join(str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__ for x in inputs)


def _trace(model: nn.Module, inputs: tuple, name: str) -> tuple[torch.fx.GraphModule, str, str]:
    """(graph module, method, why symbolic_trace was not used or "")."""
    try:
        return torch.fx.symbolic_trace(model), "symbolic_trace", ""
    except Exception as e:  # tracing failures come as many exception types
        why = _describe(e, model)
    return _export(model, inputs, name, why), "export", why


def _export(model: nn.Module, inputs: tuple, name: str, sym_why: str) -> torch.fx.GraphModule:
    try:
        ep = torch.export.export(model, inputs, strict=False)
        return ep.module()
    except Exception as e:
        exp_why = _describe(e, model)
    _check_runs(model, inputs, name)
    raise HiosError(f"cannot capture {name}: torch.fx.symbolic_trace failed ({sym_why}) and "
                    f"torch.export failed ({exp_why})")


def _check_runs(model: nn.Module, inputs: tuple, name: str) -> None:
    """Raise a HiosError naming the cause when the model itself does not run on ``inputs``."""
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as e:
        if is_out_of_memory(e):  # not a model that does not run: reported as out of memory
            raise
        raise HiosError(f"{name} does not run on input(s) of shape {_shapes(inputs)}: "
                        f"{_describe(e, model)}") from None


# ---------------------------------------------------------------------------------------------
# graph clean-up


def _get_attr(gm: nn.Module, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _drop_guards(gm: torch.fx.GraphModule) -> None:
    """Remove export's guard function and assertion nodes (nothing reads them)."""
    for node in list(gm.graph.nodes):
        if node.users:
            continue
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            gm.graph.erase_node(node)
        elif node.op == "call_function" and "assert" in _base_name(gm, node):
            gm.graph.erase_node(node)


def _inplace_rewrite(gm: torch.fx.GraphModule, node: torch.fx.Node):
    """For an in-place node, a function that rewrites it as its out-of-place form; else None."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if getattr(mod, "inplace", False) is True:
            def module_copy():
                new = copy.copy(mod)
                new.inplace = False
                gm.add_submodule(node.target, new)
            return module_copy
        return None
    if node.op == "call_method":
        name = str(node.target)
        if name.endswith("_") and not name.startswith("_") and hasattr(torch.Tensor, name[:-1]):
            return lambda: setattr(node, "target", name[:-1])
        return None
    if node.op != "call_function":
        return None
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        pkt = t.overloadpacket.__name__
        if t._schema.is_mutable and pkt.endswith("_") and not pkt.startswith("_"):
            other = getattr(torch.ops.aten, pkt[:-1], None)
            if other is not None and hasattr(other, t._overloadname):
                return lambda: setattr(node, "target", getattr(other, t._overloadname))
        return None
    pure = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
            operator.itruediv: operator.truediv}
    if t in pure:
        return lambda: setattr(node, "target", pure[t])
    name = getattr(t, "__name__", "")
    if getattr(t, "__module__", None) in ("torch", "torch._C._VariableFunctions") and name.endswith("_") \
            and not name.startswith("_") and hasattr(torch, name[:-1]):
        return lambda: setattr(node, "target", getattr(torch, name[:-1]))
    try:
        sig = inspect.signature(t)
        bound = sig.bind_partial(*node.args, **node.kwargs) if "inplace" in sig.parameters else None
    except (TypeError, ValueError):
        return None
    if bound is None or bound.arguments.get("inplace") is not True:
        return None

    def no_inplace():
        bound.arguments["inplace"] = False
        node.args, node.kwargs = tuple(bound.args), dict(bound.kwargs)
    return no_inplace


def _mutates(node: torch.fx.Node) -> bool:
    """In-place operations that :func:`_inplace_rewrite` may not know how to undo."""
    t = node.target
    if node.op == "call_method":
        return str(t).endswith("_") and not str(t).startswith("_")
    if node.op == "call_function":
        if t is operator.setitem:
            return True
        if isinstance(t, torch._ops.OpOverload):
            return t._schema.is_mutable and t.overloadpacket.__name__.endswith("_")
    return False


def _functionalize(gm: torch.fx.GraphModule, name: str) -> None:
    """In-place ops become out-of-place; later readers of the mutated value read the new node.
    An in-place op that writes through a view (a slice, a reshape…, or ``x[i] = v``) or has no
    out-of-place form is refused: splitting the model into operators would lose its effect."""
    order = {n: k for k, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if node.op not in _COMPUTE:
            continue
        rewrite = _inplace_rewrite(gm, node)
        if rewrite is None and not _mutates(node):
            continue
        src = node.args[0] if node.args else None
        view = (isinstance(src, torch.fx.Node) and src.op in _COMPUTE
                and _kind(_base_name(gm, src)) == "reshape")
        if rewrite is None or view:
            what = "writes through a view" if view or node.target is operator.setitem else "has no out-of-place form"
            raise HiosError(f"{name}: in-place operation {node.name!r} ({_base_name(gm, node)}) {what}; "
                            "hios cannot split such a model into operators (use the out-of-place form)")
        rewrite()
        if not isinstance(src, torch.fx.Node):
            continue
        here = order[node]
        for user in list(src.users):
            if user is not node and order.get(user, -1) > here:
                user.replace_input_with(src, node)


def _is_identity(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return isinstance(mod, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                nn.AlphaDropout)) and not mod.training
    if node.op != "call_function":
        return False
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        if t.overloadpacket.__name__ in ("dropout", "feature_dropout", "alpha_dropout"):
            return len(node.args) > 2 and node.args[2] is False
        return False
    if t in (torch.nn.functional.dropout, torch.nn.functional.dropout1d, torch.nn.functional.dropout2d,
             torch.nn.functional.dropout3d, torch.nn.functional.alpha_dropout, torch.dropout):
        try:
            bound = inspect.signature(t).bind(*node.args, **node.kwargs)
        except (TypeError, ValueError):
            return False
        return bound.arguments.get("training", bound.arguments.get("train")) is False
    return False


def _drop_identities(gm: torch.fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if _is_identity(gm, node) and node.args and isinstance(node.args[0], torch.fx.Node):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def _fold_weights(w: torch.Tensor, b: torch.Tensor | None, mean: torch.Tensor, var: torch.Tensor,
                  gamma: torch.Tensor | None, beta: torch.Tensor | None, eps: float):
    """Convolution weights that include an eval-mode BatchNorm (computed in float64)."""
    scale = torch.rsqrt(var.double() + eps)
    if gamma is not None:
        scale = scale * gamma.double()
    bias = -mean.double() if b is None else b.double() - mean.double()
    bias = bias * scale
    if beta is not None:
        bias = bias + beta.double()
    wf = w.double() * scale.reshape((-1,) + (1,) * (w.dim() - 1))
    return wf.to(w.dtype), bias.to(w.dtype)


_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _fold_bn_modules(gm: torch.fx.GraphModule) -> int:
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BN_MODULES):
            continue
        bn = gm.get_submodule(node.target)
        src = node.args[0] if node.args else None
        if (bn.training or bn.running_mean is None or not isinstance(src, torch.fx.Node)
                or src.op != "call_module" or len(src.users) != 1 or calls.get(src.target) != 1):
            continue
        conv = gm.get_submodule(src.target)
        if not isinstance(conv, _CONV_MODULES) or conv.weight.shape[0] != bn.running_mean.shape[0]:
            continue
        w, b = _fold_weights(conv.weight.detach(), None if conv.bias is None else conv.bias.detach(),
                             bn.running_mean, bn.running_var,
                             None if bn.weight is None else bn.weight.detach(),
                             None if bn.bias is None else bn.bias.detach(), bn.eps)
        new = copy.deepcopy(conv)
        new.weight = nn.Parameter(w, requires_grad=False)
        new.bias = nn.Parameter(b, requires_grad=False)
        gm.add_submodule(src.target, new)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    return folded


def _aten(name: str, overload: str = "default"):
    pkt = getattr(torch.ops.aten, name, None)
    return getattr(pkt, overload, None) if pkt is not None else None


def _bn_args(node: torch.fx.Node):
    """(input, weight, bias, mean, var, eps, tuple_output) of an eval-mode aten batch norm, else None."""
    t = node.target
    a = list(node.args)
    if t is _aten("batch_norm") and len(a) >= 8 and a[5] is False:
        return a[0], a[1], a[2], a[3], a[4], a[7], False
    if t is _aten("_native_batch_norm_legit_no_training") and len(a) >= 7:
        return a[0], a[1], a[2], a[3], a[4], a[6], True
    if t is _aten("native_batch_norm") and len(a) >= 8 and a[5] is False:
        return a[0], a[1], a[2], a[3], a[4], a[7], True
    return None


def _is_aten_conv(node: torch.fx.Node) -> bool:
    t = node.target
    if t in (_aten("conv1d"), _aten("conv2d"), _aten("conv3d"), _aten("conv1d", "padding"),
             _aten("conv2d", "padding"), _aten("conv3d", "padding")):
        return True
    return t is _aten("convolution") and len(node.args) > 6 and node.args[6] is False


def _fold_bn_aten(gm: torch.fx.GraphModule) -> int:
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        bn = _bn_args(node)
        if bn is None:
            continue
        x, gamma, beta, mean, var, eps, tuple_out = bn
        if not isinstance(x, torch.fx.Node) or x.op != "call_function" or not _is_aten_conv(x) \
                or len(x.users) != 1 or "bias" in x.kwargs:
            continue
        users = list(node.users)
        if tuple_out and not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
            continue
        tensors = []
        for arg in (x.args[1], x.args[2] if len(x.args) > 2 else None, mean, var, gamma, beta):
            if arg is None:
                tensors.append(None)
            elif isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                tensors.append(_get_attr(gm, arg.target).detach())
            else:
                break
        else:
            w, b, m, v, g, bt = tensors
            if m is None or v is None:
                continue
            wf, bf = _fold_weights(w, b, m, v, g, bt, float(eps))
            base = f"hios_folded_{x.name}"
            gm.register_parameter(f"{base}_weight", nn.Parameter(wf, requires_grad=False))
            gm.register_parameter(f"{base}_bias", nn.Parameter(bf, requires_grad=False))
            with gm.graph.inserting_before(x):
                wn = gm.graph.get_attr(f"{base}_weight")
                bnode = gm.graph.get_attr(f"{base}_bias")
            args = list(x.args)
            args[1] = wn
            if len(args) > 2:
                args[2] = bnode
            else:
                args.append(bnode)
            x.args = tuple(args)
            if tuple_out:
                for u in users:
                    u.replace_all_uses_with(x)
                    gm.graph.erase_node(u)
            else:
                node.replace_all_uses_with(x)
            gm.graph.erase_node(node)
            folded += 1
    return folded


# ---------------------------------------------------------------------------------------------
# one run over the graph: shapes, bytes, FLOPs, constants


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


# ---------------------------------------------------------------------------------------------
# operators


def _groups(gm: torch.fx.GraphModule) -> list[list[torch.fx.Node]]:
    """Fused groups of compute nodes, in a topological order (see the module docstring)."""
    nodes = [n for n in gm.graph.nodes if n.op in _COMPUTE]
    pos = {n: k for k, n in enumerate(gm.graph.nodes)}
    gid = {n: k for k, n in enumerate(nodes)}
    members: dict[int, list[torch.fx.Node]] = {k: [n] for k, n in enumerate(nodes)}

    def find(n: torch.fx.Node) -> int:
        return gid[n]

    def merge(a: int, b: int) -> None:
        for n in members[b]:
            gid[n] = a
        members[a].extend(members.pop(b))

    for n in nodes:  # getitem on an operator's tuple output belongs to that operator
        if n.op == "call_function" and n.target is operator.getitem and isinstance(n.args[0], torch.fx.Node) \
                and n.args[0] in gid and find(n) != find(n.args[0]):
            merge(find(n.args[0]), find(n))

    def producers(g: int) -> set[int]:
        return {gid[a] for n in members[g] for a in n.all_input_nodes if a in gid} - {g}

    def consumers(g: int) -> set[int]:
        return {gid[u] for n in members[g] for u in n.users if u in gid} - {g}

    for n in nodes:
        g = find(n)
        if g not in members:
            continue
        while True:
            cons = consumers(g)
            if len(cons) != 1:
                break
            (c,) = cons
            if producers(c) != {g}:
                break
            merge(g, c)
    groups = [sorted(ms, key=pos.__getitem__) for ms in members.values()]
    # Kahn over the group DAG, earliest first node first
    idx = {id(g[0]): k for k, g in enumerate(groups)}
    of = {n: idx[id(g[0])] for g in groups for n in g}
    preds = [set() for _ in groups]
    succs = [set() for _ in groups]
    for k, g in enumerate(groups):
        for n in g:
            for a in n.all_input_nodes:
                if a in of and of[a] != k:
                    preds[k].add(of[a])
                    succs[of[a]].add(k)
    indeg = [len(p) for p in preds]
    heap = [(pos[groups[k][0]], k) for k in range(len(groups)) if indeg[k] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, k = heapq.heappop(heap)
        order.append(groups[k])
        for s in succs[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (pos[groups[s][0]], s))
    return order


def _attr_bytes(gm: torch.fx.GraphModule, node: torch.fx.Node) -> int:
    """Bytes of parameters/buffers a node reads."""
    total = 0
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        total += sum(t.numel() * t.element_size() for t in list(mod.parameters()) + list(mod.buffers()))
    for a in node.all_input_nodes:
        if a.op == "get_attr":
            t = _get_attr(gm, a.target)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _module_path(node: torch.fx.Node) -> str | None:
    """Qualified name of the module that ran ``node`` (export records it), "" at the root."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    entry = list(stack.values())[-1]
    path = str(entry[0] if isinstance(entry, (tuple, list)) else entry)
    path = re.sub(r"^L\['self'\]\.?", "", path)
    return re.sub(r"[^A-Za-z0-9_.]", "_", path)


def _op_names(gm: torch.fx.GraphModule, groups: list[list[torch.fx.Node]], method: str) -> list[str]:
    """Operator names.  After symbolic tracing: the first node's fx name (already built from the
    module path).  After export, fx names are op counters ("conv2d_17") that shift when torch
    versions decompose differently, so the name is ``<module path>.<op>`` of the first node (a
    ``_k`` suffix tells repeats apart), which keeps plans and profiles portable."""
    if method != "export":
        return [g[0].name for g in groups]
    names, used = [], set()
    for g in groups:
        path = _module_path(g[0])
        base = _base_name(gm, g[0])
        cand = g[0].name if path is None else (f"{path}.{base}" if path else base)
        name, k = cand, 0
        while name in used:
            k += 1
            name = f"{cand}_{k}"
        used.add(name)
        names.append(name)
    return names


def _operators(gm: torch.fx.GraphModule, info: dict[str, _NodeInfo], name: str,
               method: str = "symbolic_trace") -> Graph:
    groups = _groups(gm)
    opnames = _op_names(gm, groups, method)
    owner = {n: opnames[k] for k, g in enumerate(groups) for n in g}
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    ops, edges = [], []
    for g, opname in zip(groups, opnames):
        members = set(g)
        kinds = [_kind(_base_name(gm, n)) for n in g]
        kind = min(kinds, key=_RANK.index)
        outputs = [n for n in g if any(u not in members for u in n.users)]
        flops = [info[n.name].flops for n in g]
        known = [f for f in flops if f is not None]
        moved = 0
        work = []  # per kernel: [tensor FLOPs, FLOPs, bytes read + written]
        for n, k in zip(g, kinds):
            if k == "reshape":
                continue
            nb = info[n.name].nbytes + _attr_bytes(gm, n)
            nb += sum(info[a.name].nbytes for a in n.all_input_nodes if a.name in info)
            work.append([info[n.name].tensor_flops, info[n.name].flops or 0, int(nb)])
            moved += nb
        kernels = len(work)
        first = next((info[n.name] for n in outputs if info[n.name].dtypes), None)
        ops.append(Operator(
            opname, 0.0, kind, sum(info[n.name].nbytes for n in outputs), 1.0,
            {"nodes": [n.name for n in g], "flops": sum(known) if known else None,
             "tensor_flops": sum(info[n.name].tensor_flops for n in g), "bytes_moved": int(moved),
             "kernel_work": work, "out_shapes": [s for n in outputs for s in info[n.name].shapes],
             "dtype": first.dtypes[0] if first else None, "kernels": kernels,
             "graph_output": any(out_node in n.users for n in g)}))
        reads: dict[str, set[str]] = {}
        for n in g:
            for a in n.all_input_nodes:
                if a in owner and a not in members:
                    reads.setdefault(owner[a], set()).add(a.name)
        for src, names in reads.items():
            edges.append(Edge(src, opname, sum(info[x].nbytes for x in names)))
    return Graph(ops, edges, name)


# ---------------------------------------------------------------------------------------------


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
