"""Step 2 of :func:`~hios.frontend.capture.capture`: clean the fx graph (drop export's guards, in-place
operations out of place, eval-mode identities dropped, BatchNorm folded into its convolution, a
repeated pure call computed once)."""

from __future__ import annotations

import copy
import inspect
import operator
from typing import Any

import torch
import torch.fx
from torch import nn

from ...errors import HiosError
from .nodes import _COMPUTE, _base_name, _kind


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


#: Node kinds whose identical calls compute identical values (no state, no randomness): a
#: duplicate is computed once (:func:`_share_duplicates`).
_SHAREABLE = frozenset({"relu", "activation", "pad", "pool", "add", "mul"})


def _share_key(gm: torch.fx.GraphModule, node: torch.fx.Node):
    """What makes ``node``'s value: None when it may not be shared (not a pure activation, pad,
    pool or arithmetic node, a module with parameters, arguments that cannot be compared)."""
    if node.op not in ("call_function", "call_method", "call_module") or not node.all_input_nodes:
        return None
    if _kind(_base_name(gm, node)) not in _SHAREABLE:
        return None
    what: Any = node.target
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if any(True for _ in mod.parameters()) or any(True for _ in mod.buffers()):
            return None
        what = (type(mod), repr(mod))
    try:
        key = (node.op, what, node.args, tuple(sorted(node.kwargs.items())))
        hash(key)
    except TypeError:
        return None
    return key


def _share_duplicates(gm: torch.fx.GraphModule) -> int:
    """Compute each pure value once: a node that repeats an earlier node's call (same function or
    parameter-free module of the same kind and settings, same inputs, same arguments) is
    replaced by it.  NASNet applies ReLU to one tensor in up to four branches of a cell; the
    whole-model compiler computes it once, and so now does every plan.  Returns how many
    nodes were dropped."""
    seen: dict = {}
    dropped = 0
    for node in list(gm.graph.nodes):
        key = _share_key(gm, node)
        if key is None:
            continue
        first = seen.setdefault(key, node)
        if first is not node:
            node.replace_all_uses_with(first)
            gm.graph.erase_node(node)
            dropped += 1
    return dropped


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
