"""Node classification: the operation name and kind of an fx node."""

from __future__ import annotations

import torch
import torch.fx


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
