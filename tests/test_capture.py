"""Capture of PyTorch models into operator graphs (CPU)."""

import json
import operator

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hios import HiosError  # noqa: E402
from hios.formats import graph_to_dict  # noqa: E402
from hios.frontend.capture import capture  # noqa: E402
from hios.frontend.segments import run_by_operators  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads competing with other processes
    make these tiny convolutions a hundred times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize_bn(model, seed=1):
    """Non-trivial BatchNorm statistics, so that folding them changes the weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def close(out, ref, tol=1e-4):
    scale = ref.abs().max().item()
    assert scale > 1e-3, "reference output vanishes: the comparison would be meaningless"
    return (out - ref).abs().max().item() <= tol * scale


class Branchy(nn.Module):
    """Two branches, in-place ReLU, a shape node and a tuple output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.left = nn.Conv2d(8, 8, 1)
        self.right = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                                   nn.Conv2d(4, 8, 3, padding=1))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = self.act(self.bn(self.stem(x)))
        a = self.left(y)
        b = self.right(y)
        z = torch.cat([a, b], 1).mean((2, 3)).view(x.size(0), -1)
        return self.fc(z), a + b


class ShapeBranch(Branchy):
    """Control flow on a shape: symbolic tracing fails, export works."""

    def forward(self, x):
        y = self.act(self.bn(self.stem(x)))
        if y.shape[2] > 4:
            y = y * 2
        a, b = self.left(y), self.right(y)
        return {"logits": self.fc(torch.cat([a, b], 1).mean((2, 3))), "sum": a + b}


class DataBranch(Branchy):
    def forward(self, x):
        y = self.stem(x)
        if y.sum() > 0:
            y = y * 2
        return y


def make(cls):
    torch.manual_seed(0)
    return randomize_bn(cls().eval()), (torch.randn(2, 3, 8, 8),)


def test_symbolic_trace_capture_matches_model():
    model, inputs = make(Branchy)
    c = capture(model, inputs, "branchy")
    assert c.method == "symbolic_trace"
    assert c.input_names == ["x"]
    g = c.graph
    # BatchNorm folded into the convolutions: no BatchNorm module is called any more
    called = [c.gm.get_submodule(n.target) for n in c.gm.graph.nodes if n.op == "call_module"]
    assert called and not any(isinstance(m, nn.BatchNorm2d) for m in called)
    # the user's model is untouched
    assert isinstance(model.bn, nn.BatchNorm2d) and model.act.inplace
    with torch.no_grad():
        ref = model(*inputs)
    out = run_by_operators(c, *inputs)
    assert isinstance(out, tuple) and len(out) == 2
    assert close(out[0], ref[0]) and close(out[1], ref[1])
    # stem (conv+relu) | left | right chain | concat..fc | add: five operators
    assert len(g) == 5
    assert g.ops[0].kind == "conv" and g.ops[0].meta["nodes"][:2] == ["stem", "act"]
    json.dumps(graph_to_dict(g))  # meta is JSON-serializable


def test_operator_meta_and_edge_bytes():
    model, inputs = make(Branchy)
    c = capture(model, inputs)
    g = c.graph
    stem = g.ops[0]
    # stem output: 2 x 8 x 8 x 8 fp32
    assert stem.output_bytes == 2 * 8 * 8 * 8 * 4
    assert stem.meta["out_shapes"] == [[2, 8, 8, 8]] and stem.meta["dtype"] == "float32"
    # conv 3->8, 3x3, 8x8 output, batch 2: 2 * 2*8*8*8 * 27 FLOPs, plus one per ReLU output element
    assert stem.meta["flops"] == 2 * (2 * 8 * 8 * 8) * 27 + 2 * 8 * 8 * 8
    assert stem.meta["bytes_moved"] > stem.output_bytes
    for e in g.edges:
        assert e.bytes == g[e.src].output_bytes or e.bytes <= g[e.src].output_bytes
    succ = {g.ops[v].name for v in g.succs[0]}
    assert len(succ) == 2 and all(e.bytes == stem.output_bytes for e in g.edges if e.src == stem.name)
    # every fx compute node belongs to exactly one operator
    owned = [n for op in g.ops for n in op.meta["nodes"]]
    compute = [n.name for n in c.gm.graph.nodes if n.op in ("call_function", "call_method", "call_module")]
    assert sorted(owned) == sorted(compute)
    # topological order
    pos = {op.name: k for k, op in enumerate(g.ops)}
    assert all(pos[e.src] < pos[e.dst] for e in g.edges)


def test_shape_nodes_are_folded():
    model, inputs = make(Branchy)
    c = capture(model, inputs)
    targets = [n.target for n in c.gm.graph.nodes]
    assert "size" not in targets and getattr not in targets


def test_export_fallback_folds_batchnorm_and_keeps_structure():
    model, inputs = make(ShapeBranch)
    c = capture(model, inputs, "shapebranch")
    assert c.method == "export"
    assert "symbolic_trace_error" in c.graph.meta
    # exported operators are named after the module that runs them, not after op counters
    assert c.graph.ops[0].name.startswith("stem.")  # stem.conv2d (stem.convolution on older torch)
    assert any(n.startswith("left.") for n in c.graph.names) and any(n.startswith("right.") for n in c.graph.names)
    names = [str(n.target) for n in c.gm.graph.nodes if n.op == "call_function"]
    assert not any("batch_norm" in t for t in names)
    assert not any(t.endswith("_.default") for t in names)  # in-place ops made out-of-place
    with torch.no_grad():
        ref = model(*inputs)
    out = run_by_operators(c, *inputs)
    assert set(out) == {"logits", "sum"}
    assert close(out["logits"], ref["logits"]) and close(out["sum"], ref["sum"])


def test_getitem_belongs_to_its_producer():
    class Split(nn.Module):
        def forward(self, x):
            a, b = torch.chunk(x * 2, 2, 1)
            return torch.relu(a) + torch.sigmoid(b)

    c = capture(Split(), (torch.randn(1, 4, 3, 3),))
    chunk_op = next(op for op in c.graph.ops if "chunk" in op.meta["nodes"])
    getitems = [n.name for n in c.gm.graph.nodes if n.target is operator.getitem]
    assert getitems and all(n in chunk_op.meta["nodes"] for n in getitems)
    x = torch.randn(1, 4, 3, 3)
    assert close(run_by_operators(c, x), Split()(x))


def test_untraceable_model_names_module_and_cause():
    model, inputs = make(DataBranch)
    with pytest.raises(HiosError) as e:
        capture(model, inputs, "databranch")
    msg = str(e.value)
    assert "\n" not in msg
    assert "symbolic_trace" in msg and "export" in msg and "DataBranch" in msg


def test_input_too_small_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 7), nn.ReLU()).eval()
    with pytest.raises(HiosError, match=r"does not run on input\(s\) of shape \(1, 3, 4, 4\).*Conv2d"):
        capture(model, (torch.randn(1, 3, 4, 4),), "tiny")


def test_not_a_module():
    with pytest.raises(HiosError, match="torch.nn.Module"):
        capture(lambda x: x, (torch.randn(1),))


def test_lazy_top_level_capture():
    import hios

    assert hios.capture is capture


def test_tensors_built_from_shapes_become_constants():
    """``torch.ones(y.shape, device=y.device)`` reads no model input once shapes are folded: it
    becomes an attribute (which moves with the module), not an operator pinned to a device."""

    class Ones(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.c(x)
            return y + torch.ones(y.shape, device=y.device, dtype=y.dtype) * 2

    model = Ones().eval()
    x = torch.randn(1, 3, 5, 5)
    c = capture(model, (x,))
    assert [op.kind for op in c.graph.ops] == ["conv"] and len(c.graph) == 1
    assert not any(n.target is torch.ones for n in c.gm.graph.nodes)
    assert close(run_by_operators(c, x), model(x))


def test_core_aten_ir_is_cleaned_too():
    """Older torch versions export core ATen (aten.convolution, _native_batch_norm_legit_no_training
    + getitem, max_pool2d_with_indices): BatchNorm folding and grouping work on that form as well."""
    from hios.frontend.capture import _operators, _prepare

    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                       nn.MaxPool2d(2), nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4)).eval())
    x = torch.randn(1, 3, 10, 10)
    gm = torch.export.export(model, (x,), strict=False).run_decompositions().module()
    assert any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    info = _prepare(gm, (x,), "core")
    assert not any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    g = _operators(gm, info, "core")
    assert len(g) == 1 and g.ops[0].kind == "conv"
    with torch.no_grad():
        assert close(gm(x), model(x))


def test_in_place_write_through_a_view_is_refused():
    """Splitting ``y[:, :2].relu_()`` (or ``y[:, :2] = ...``) from the readers of ``y`` would lose
    the write: capture refuses it with a one-line error naming the operation."""

    class SliceRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.c(x)
            y[:, :2].relu_()
            return y * 1.5

    class SetItem(SliceRelu):
        def forward(self, x):
            y = self.c(x)
            y[:, :2] = 0.0
            return y * 1.5

    for cls in (SliceRelu, SetItem):
        with pytest.raises(HiosError, match="in-place operation .* writes through a view") as e:
            capture(cls().eval(), (torch.randn(1, 3, 4, 4),))
        assert "\n" not in str(e.value)


def test_values_read_from_tensor_data_are_not_folded():
    """``y.mean().item() * 2.0`` depends on the input: capture must keep it, not fold the value it
    saw on the example input into a literal (a silently wrong answer on any other input)."""
    import torch

    from hios.frontend.capture import capture
    from hios.frontend.segments import run_by_operators

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return y * (y.mean().item() * 2.0)

    torch.manual_seed(0)
    model = Scaled().eval()
    c = capture(model, torch.randn(1, 3, 16, 16))
    other = torch.randn(1, 3, 16, 16) * 3 + 1
    with torch.no_grad():
        assert torch.allclose(run_by_operators(c, other), model(other), rtol=1e-5, atol=1e-6)


class Cell(nn.Module):
    """A NASNet-like cell: three branches apply ReLU to one input (separate modules, as NASNet
    does), a pool and two adds join them, and a concatenation reads the joins."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.acts = nn.ModuleList(nn.ReLU() for _ in range(3))
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(3))
        self.pool = nn.AvgPool2d(3, 1, 1)

    def forward(self, x):
        x = self.stem(x)
        a, b, c = (conv(act(x)) for act, conv in zip(self.acts, self.convs))
        return torch.cat([a + b, self.pool(x) + c, x], 1)


def test_shared_relu_is_computed_once_and_cheap_joins_join_their_reader():
    model, x = Cell(), (torch.randn(1, 3, 8, 8),)
    c = capture(model, x, "cell")
    relus = [n for n in c.gm.graph.nodes if n.op == "call_module" and isinstance(c.gm.get_submodule(n.target), nn.ReLU)]
    assert len(relus) == 1  # three identical ReLU calls on x: one is left
    g = c.graph
    by_node = {n: op for op in g.ops for n in op.meta["nodes"]}
    # the shared ReLU joins its only producer (the stem); the pool joins the add it feeds, and
    # both adds join the concatenation that alone reads them
    assert by_node[relus[0].name] is by_node["stem"]
    tail = by_node["cat"]
    assert {"pool", "add", "add_1"} <= set(tail.meta["nodes"])
    # stem | three convolutions | tail
    assert len(g) == 5
    with torch.no_grad():
        assert close(run_by_operators(c, *x), model(*x))


def test_duplicates_with_other_arguments_or_weights_stay_apart():
    class Near(nn.Module):
        def __init__(self):
            super().__init__()
            self.p1, self.p2 = nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(2, 1)
            self.c1, self.c2 = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.p1(x), self.p2(x), self.c1(x), self.c2(x), torch.relu(x + 1), torch.relu(x + 2)

    model, x = Near(), (torch.randn(1, 2, 5, 5),)
    c = capture(model, x)
    kinds = [str(n.target) for n in c.gm.graph.nodes if n.op != "placeholder" and n.op != "output"]
    assert len(kinds) == 8  # nothing shared: other pool sizes, weights, constants
    assert all(close(a, b) for a, b in zip(run_by_operators(c, *x), model(*x)))
