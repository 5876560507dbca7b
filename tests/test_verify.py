"""The front door never returns a wrong module (hios.runtime.local.verify): a wrong build is localised,
rebuilt without the lever or segment at fault with one warning, or refused with a HiosError."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import hios  # noqa: E402
import hios.runtime.local.fuse_epilogue as fe  # noqa: E402
from hios.errors import HiosError  # noqa: E402
from hios.runtime.local.executor import Seg  # noqa: E402


class Branches(nn.Module):
    """A stem and four convolution + ReLU branches (fusable epilogues) joined by a concatenation."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.branches = nn.ModuleList(nn.Conv2d(c, c, 3 if k % 2 else 1, padding=k % 2) for k in range(4))
        self.head = nn.Linear(4 * c, 5)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        z = torch.cat([torch.relu(b(y)) for b in self.branches], 1)
        return self.head(z.mean((2, 3)))


@pytest.fixture()
def model_x():
    torch.manual_seed(0)
    return Branches().eval(), torch.randn(1, 3, 12, 12)


@pytest.fixture()
def fused_on_cpu(monkeypatch):
    """The fused rewrite applied on CPU (the reference kernel runs in the custom operator)."""
    monkeypatch.setattr(fe, "unsupported_reason", lambda *a, **k: None)


def _optimize(model, x, **kw):
    return hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100", **kw)


def _close(fast, model, x):
    with torch.no_grad():
        out, ref = fast(x), model(x)
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_right_build_is_returned_without_warning(model_x, fused_on_cpu):
    model, x = model_x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = _optimize(model, x)
    assert sum(s.fused for s in fast.runtime.segments) == 5  # every conv + ReLU fused
    _close(fast, model, x)
    _close(fast, model, torch.randn_like(x))


def test_wrong_fused_segment_is_rebuilt_without_fusion(model_x, fused_on_cpu, monkeypatch):
    model, x = model_x
    good = fe._reference
    monkeypatch.setattr(fe, "_reference", lambda *a: good(*a) * 1.5)  # a wrong fused kernel
    with pytest.warns(UserWarning, match=r"Branches: the plan's output differed from model\(x\).*"
                                         r"rebuilt without fused epilogues: segment .*relative error now"):
        fast = _optimize(model, x)
    lv = fast.runtime.levers
    assert lv.fuse_epilogues and lv.unfused  # only the faulty segments lost the lever
    assert sum(s.fused for s in fast.runtime.segments) == 0  # every fused segment was wrong here
    _close(fast, model, x)
    _close(fast, model, torch.randn_like(x))


def test_only_the_faulty_segment_loses_fusion(model_x, fused_on_cpu, monkeypatch):
    model, x = model_x
    good = fe._reference

    def wrong_for_wide(x, weight, *rest):  # only the 3x3 branch convolutions are wrong
        y = good(x, weight, *rest)
        return y * 2 if weight.shape[-1] == 3 and weight.shape[1] != 3 else y
    monkeypatch.setattr(fe, "_reference", wrong_for_wide)
    with pytest.warns(UserWarning, match="without fused epilogues"):
        fast = _optimize(model, x)
    segs = fast.runtime.segments
    assert sum(s.fused for s in segs) == 3  # the stem and the two 1x1 branches stay fused
    _close(fast, model, x)


def test_no_right_build_raises_with_the_error_figures(model_x, monkeypatch):
    model, x = model_x
    run = Seg.run

    def corrupt(self, env, first, on_fallback):  # wrong whatever the levers
        run(self, env, first, on_fallback)
        for n in self.outputs:
            if n.startswith("head"):
                env[n] = env[n] + 1.0
    monkeypatch.setattr(Seg, "run", corrupt)
    with pytest.raises(HiosError, match=r"Branches: the plan's output differs from model\(x\) beyond the tolerance "
                                        r".*levers fuse_epilogues: relative error [0-9.e-]+.*levers none"):
        _optimize(model, x)


def test_check_false_skips_the_check(model_x, fused_on_cpu, monkeypatch):
    model, x = model_x
    good = fe._reference
    monkeypatch.setattr(fe, "_reference", lambda *a: good(*a) * 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = _optimize(model, x, check=False)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() > 1e-3  # unchecked: the wrong build is what runs


def test_load_checks_too(model_x, fused_on_cpu, monkeypatch, tmp_path):
    model, x = model_x
    _optimize(model, x).save(tmp_path / "plan.json")
    good = fe._reference
    monkeypatch.setattr(fe, "_reference", lambda *a: good(*a) * 1.5)
    with pytest.warns(UserWarning, match="without fused epilogues"):
        fast = hios.load(tmp_path / "plan.json", model, x, devices="cpu,cpu")
    _close(fast, model, x)


# --------------------------------------------------------------------------- the fused operator
def _layouts(shape):
    t = torch.randn(shape)
    return {"nchw": t.contiguous(), "nhwc": t.contiguous(memory_format=torch.channels_last)}


@pytest.mark.parametrize("xs,ws,pad", [((1, 8, 7, 7), (16, 8, 1, 1), 0),   # 1x1 weight: ambiguous layout
                                       ((1, 8, 1, 1), (16, 8, 1, 1), 0),   # 1x1 input and output: ambiguous
                                       ((2, 3, 9, 9), (4, 3, 3, 3), 1),
                                       ((1, 1, 5, 5), (4, 1, 3, 3), 1)])  # one input channel: ambiguous
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_operator_output_strides_never_depend_on_input_layouts(xs, ws, pad, channels_last):
    """The output's strides are fe.out_strides(shape, channels_last) exactly, for every layout of the
    input and the weight (a compiler may hand the operator other layouts than it traced with), and the
    fake implementation agrees (torch.library.opcheck)."""
    op = torch.ops.hios.conv_bias_relu.default
    want = None
    for x in _layouts(xs).values():
        for w in _layouts(ws).values():
            args = (x, w, torch.randn(ws[0]), [1, 1], [pad, pad], [1, 1], 1, None, channels_last)
            y = op(*args)
            ref = torch.relu(torch.nn.functional.conv2d(x, w, args[2], 1, pad))
            assert torch.allclose(y, ref, atol=1e-5)
            assert y.stride() == fe.out_strides(y.shape, channels_last)
            want = want or y.stride()
            assert y.stride() == want
            torch.library.opcheck(op, args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN's fused kernel)")
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_operator_on_cuda_output_strides_never_depend_on_input_layouts(channels_last):
    """On CUDA cuDNN picks its output layout from the input's and the weight's (a 1x1 weight placed
    channels_last makes an NHWC output from an NCHW input): the operator must still return
    out_strides exactly, as its fake implementation promises to the compiler."""
    torch.backends.cudnn.allow_tf32 = False
    op = torch.ops.hios.conv_bias_relu.default
    for xs, ws, pad in (((1, 312, 7, 7), (1280, 312, 1, 1), 0), ((1, 3, 32, 32), (16, 3, 3, 3), 1)):
        for x in _layouts(xs).values():
            for w in _layouts(ws).values():
                x, w, b = x.cuda(), w.cuda(), torch.randn(ws[0], device="cuda")
                y = op(x, w, b, [1, 1], [pad, pad], [1, 1], 1, None, channels_last)
                ref = torch.relu(torch.nn.functional.conv2d(x, w, b, 1, pad))
                assert y.stride() == fe.out_strides(y.shape, channels_last)
                assert torch.allclose(y, ref, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: Inductor pads strides on GPUs only")
def test_randwire_last_segment_with_a_fused_epilogue_compiles_right_on_cuda():
    """RandWire 224's last segment (stack -> mean -> ReLU -> fused 1x1 convolution + ReLU -> pooling
    -> fc), built as the runtime builds it.  With Inductor's comprehensive padding (PyTorch 2.11,
    H200) the kernel reading the stack buffer used a padded stride (15296) that its allocation did
    not have: relative error 0.59.  A CPU cannot show it: Inductor never pads on CPUs
    (``disable_padding_cpu``), and with padding forced on, PyTorch 2.14's CPU code was right."""
    from types import SimpleNamespace

    from hios.frontend.capture import capture
    from hios.frontend.segments import build_segment
    from hios.frontend.zoo import build
    from hios.runtime.measure.bench import compare_outputs
    from hios.runtime.local.executor import place_module
    from hios.cost.timing import set_precision
    pytest.importorskip("networkx")
    set_precision(False)
    model, (x,) = build("randwire", 224)
    cap = capture(model, (x,), "randwire")
    vals = {}

    class Keep(torch.fx.Interpreter):
        def run_node(self, n):
            vals[n.name] = v = super().run_node(n)
            return v
    with torch.no_grad():
        Keep(cap.gm).run(x)
    last = cap.graph.ops[cap.graph.topo[-1]].name
    seg = build_segment(cap, [last])
    dev = torch.device("cuda:0")
    args = [vals[n].to(dev).contiguous(memory_format=torch.channels_last) for n in seg.inputs]
    built = Seg.build(SimpleNamespace(ops=(last,)), seg, dev, "inductor", True, {}, "cuda:0", fuse=True)
    assert built.fused == 1
    ref = place_module(seg.module, dev, True, {}).eval()
    with torch.no_grad():
        chk = compare_outputs(built.fn(*args), ref(*args), 1e-4)
    assert chk.ok, chk
