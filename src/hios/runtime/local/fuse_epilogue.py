"""Fused convolution epilogues: convolution + bias + ReLU (and + residual add) as one kernel.

Inductor runs a convolution as a cuDNN/CUTLASS call and its bias and ReLU as a separate Triton
kernel; cuDNN offers the whole epilogue in one kernel (``torch.cudnn_convolution_relu``,
``torch.cudnn_convolution_add_relu``).  :func:`fuse_conv_epilogues` rewrites an fx graph so that
each ``relu(conv2d(x) [+ z])`` becomes one call of the custom operator ``hios::conv_bias_relu``,
which Inductor keeps as one extern kernel.

Steps of :func:`fuse_conv_epilogues`:
  1. Find candidates: a 2-d convolution (``nn.Conv2d`` module, ``F.conv2d`` / ``torch.conv2d``)
     whose only user is a ReLU, or an addition whose only user is a ReLU (the residual form).
  2. Check what the backend can honour (:func:`unsupported_reason`): CUDA device with cuDNN, a
     floating dtype cuDNN fuses, zero padding given as numbers.  A CUDA candidate that fails the
     check keeps its unfused form with one warning naming the operator; on CPU nothing is
     rewritten, silently (``force=True`` rewrites anyway, running the reference kernel: the test
     path).
  3. Replace the pattern by one ``hios::conv_bias_relu`` node reading the weight and bias as
     attributes; the dead convolution / addition / ReLU nodes are dropped.

``hios::conv_bias_relu`` runs cuDNN's fused kernel on CUDA and the reference composition
(convolution, add, ReLU) elsewhere.  Its output has exactly the strides of :func:`out_strides`:
NHWC when the rewrite was asked for ``channels_last`` (the runtime's layout), else NCHW, whatever
layout cuDNN picked (a copy only when they differ).  The fake implementation promises the same, so
a compiled graph never reads the output with other strides than it has, however the compiler lays
out the operator's inputs.
"""

from __future__ import annotations

import operator
import warnings
from typing import Optional, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def out_strides(shape: Sequence[int], channels_last: bool) -> tuple[int, ...]:
    """The strides of the operator's output: NHWC when ``channels_last``, else NCHW, exactly.

    A pure function of the shape and of a flag fixed when the graph is rewritten, never of the
    input's or the weight's strides: a compiler may hand the operator inputs laid out otherwise
    than when it was traced, and an output whose strides then differ from the fake
    implementation's is read with the wrong strides by the kernels after it."""
    fmt = torch.channels_last if channels_last and len(shape) == 4 else torch.contiguous_format
    return torch.empty(tuple(shape), device="meta", memory_format=fmt).stride()


def _exactly(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``y`` with exactly :func:`out_strides` (a copy only when they differ)."""
    want = out_strides(y.shape, channels_last)
    if tuple(y.stride()) == want:
        return y
    return torch.empty_strided(y.shape, want, dtype=y.dtype, device=y.device).copy_(y)


def _reference(x, weight, bias, stride, padding, dilation, groups, residual):
    y = F.conv2d(x, weight, bias, list(stride), list(padding), list(dilation), groups)
    if residual is not None:
        y = y + residual
    return torch.relu(y)


@torch.library.custom_op("hios::conv_bias_relu", mutates_args=())
def conv_bias_relu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
                   padding: Sequence[int], dilation: Sequence[int], groups: int,
                   residual: Optional[torch.Tensor], channels_last: bool) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias) + residual)``: one cuDNN kernel on CUDA, the reference elsewhere;
    the output has exactly :func:`out_strides` ``(shape, channels_last)``."""
    if x.is_cuda and torch.backends.cudnn.is_available():
        if residual is None:
            y = torch.cudnn_convolution_relu(x, weight, bias, list(stride), list(padding), list(dilation), groups)
        else:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            y = torch.cudnn_convolution_add_relu(x, weight, residual.contiguous(memory_format=fmt), 1.0, bias,
                                                 list(stride), list(padding), list(dilation), groups)
    else:
        y = _reference(x, weight, bias, stride, padding, dilation, groups, residual)
    return _exactly(y, channels_last)


@conv_bias_relu.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, residual, channels_last):
    n, _, h, w = x.shape
    k, _, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, k, oh, ow)
    return x.new_empty_strided(shape, out_strides(shape, channels_last))


# --------------------------------------------------------------------------- step 1: candidates
def _is_relu(gm: torch.fx.GraphModule, n: torch.fx.Node) -> bool:
    if n.op == "call_function":
        return n.target in (F.relu, torch.relu, torch.ops.aten.relu.default) and not n.kwargs.get("inplace")
    if n.op == "call_method":
        return n.target == "relu"
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)) is nn.ReLU
    return False


def _is_add(n: torch.fx.Node) -> bool:
    if n.op == "call_function" and n.target in (operator.add, torch.add, torch.ops.aten.add.Tensor):
        return len(n.args) == 2 and not n.kwargs
    return n.op == "call_method" and n.target == "add" and len(n.args) == 2 and not n.kwargs


def _conv_params(gm: torch.fx.GraphModule, n: torch.fx.Node):
    """``(x, weight, bias, stride, padding, dilation, groups, dtype)`` of a 2-d convolution node, or None.
    ``weight`` / ``bias`` are attribute targets (str) or nodes; padding may be a string (refused later)."""
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if type(m) is not nn.Conv2d or m.padding_mode != "zeros" or len(n.args) != 1 or n.kwargs:
            return None
        return (n.args[0], f"{n.target}.weight", f"{n.target}.bias" if m.bias is not None else None,
                tuple(m.stride), m.padding, tuple(m.dilation), m.groups, m.weight.dtype)
    if n.op == "call_function" and n.target in (F.conv2d, torch.conv2d):
        names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
        defaults = [None, None, None, 1, 0, 1, 1]
        vals = dict(zip(names, defaults))
        vals.update(zip(names, n.args))
        vals.update(n.kwargs)
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        pad = vals["padding"] if isinstance(vals["padding"], str) else pair(vals["padding"])
        return (vals["input"], vals["weight"], vals["bias"], pair(vals["stride"]), pad, pair(vals["dilation"]),
                vals["groups"], None)
    return None


def _candidates(gm: torch.fx.GraphModule):
    """(conv node, add node or None, residual node or None, relu node) for every fusable chain."""
    out = []
    for relu in gm.graph.nodes:
        if not _is_relu(gm, relu) or not relu.all_input_nodes:
            continue
        src = relu.all_input_nodes[0]
        add, residual, conv = None, None, src
        if _is_add(src) and len(src.users) == 1:
            a, b = src.args
            for c, z in ((a, b), (b, a)):
                if isinstance(c, torch.fx.Node) and isinstance(z, torch.fx.Node) and len(c.users) == 1 \
                        and _conv_params(gm, c) is not None:
                    add, residual, conv = src, z, c
                    break
        if len(conv.users) != 1 or _conv_params(gm, conv) is None:
            continue
        out.append((conv, add, residual, relu))
    return out


# --------------------------------------------------------------------------- step 2: what the backend honours
def unsupported_reason(device: torch.device | str, dtype: torch.dtype | None, padding) -> str | None:
    """Why cuDNN's fused kernel cannot run this convolution (None: it can)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"no fused kernel on {device.type}"
    if not torch.backends.cudnn.is_available():
        return "cuDNN is not available"
    if dtype is not None and dtype not in _FUSED_DTYPES:
        return f"cuDNN fuses no {str(dtype).replace('torch.', '')} convolution"
    if isinstance(padding, str) or not all(isinstance(p, int) for p in padding):
        return f"padding {padding!r} is not a pair of numbers"
    return None


# --------------------------------------------------------------------------- step 3: rewrite
def _attr_node(graph: torch.fx.Graph, ref):
    return graph.get_attr(ref) if isinstance(ref, str) else ref


def fuse_conv_epilogues(gm: torch.fx.GraphModule, device: torch.device | str, *, channels_last: bool = False,
                        force: bool = False, label: str = "") -> int:
    """Rewrite ``gm`` in place (steps 1-3 of the module docstring); returns the number of fused
    chains.  ``channels_last``: the fused operators write NHWC outputs (the runtime's layout), else
    NCHW.  ``label`` names the operator in warnings."""
    device = torch.device(device)
    fused = 0
    refused: list[str] = []
    for conv, add, residual, relu in _candidates(gm):
        x, w, b, stride, padding, dilation, groups, dtype = _conv_params(gm, conv)
        why = unsupported_reason(device, dtype, padding)
        if why is not None and not (force and not isinstance(padding, str)):
            if device.type == "cuda":
                refused.append(f"{conv.name} ({why})")
            continue
        with gm.graph.inserting_before(relu):
            args = (x, _attr_node(gm.graph, w), _attr_node(gm.graph, b) if b is not None else None,
                    list(stride), list(padding), list(dilation), groups, residual, bool(channels_last))
            node = gm.graph.call_function(torch.ops.hios.conv_bias_relu.default, args)
        relu.replace_all_uses_with(node)
        for dead in (relu, add, conv):
            if dead is not None:
                gm.graph.erase_node(dead)
        fused += 1
    if refused:
        where = f" in {label}" if label else ""
        warnings.warn(f"hios: convolution epilogue not fused{where} for {', '.join(refused)}; "
                      "running convolution and ReLU as separate kernels", stacklevel=2)
    if fused:
        gm.graph.lint()
        gm.recompile()
    return fused


__all__ = ["conv_bias_relu", "fuse_conv_epilogues", "unsupported_reason"]
