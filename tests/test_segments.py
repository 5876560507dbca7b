"""Segments of a captured model: running operators one by one equals running the model."""

import pytest

torch = pytest.importorskip("torch")

from hios import HiosError  # noqa: E402
from hios.frontend import zoo  # noqa: E402
from hios.frontend.capture import capture  # noqa: E402
from hios.frontend.segments import assemble_output, build_segment, output_names, run_by_operators  # noqa: E402

from test_capture import Branchy, close, make, one_thread, randomize_bn  # noqa: E402,F401


def check_model(name, size, method):
    model, inputs = zoo.build(name, size)
    randomize_bn(model)
    c = capture(model, inputs, name)
    assert c.method == method
    with torch.no_grad():
        ref = model(*inputs)
    out = run_by_operators(c, *inputs)
    assert out.shape == ref.shape and close(out, ref)
    return c


@pytest.mark.parametrize("name,size", [("squeezenet1_1", 64), ("googlenet", 64), ("inception_v3", 80)])
def test_torchvision_run_by_operators(name, size):
    pytest.importorskip("torchvision")
    check_model(name, size, "symbolic_trace")


def test_randwire_run_by_operators():
    check_model("randwire", 32, "symbolic_trace")


def test_nasnetalarge_exports_and_runs():
    """timm's NASNet-A Large fails symbolic tracing (control flow on traced values) and is exported."""
    pytest.importorskip("timm")
    c = check_model("nasnetalarge", 64, "export")
    # 197 operators: 158 branch chains, the cells' adds, pools and pads joined to their readers
    assert len(c.graph) > 150


def test_segment_of_several_operators():
    model, inputs = make(Branchy)
    c = capture(model, inputs)
    g = c.graph
    names = [g.ops[i].name for i in g.topo]
    first = build_segment(c, names[:3])
    assert first.inputs == ["x"]
    # the stem's output is consumed inside the segment only; what leaves is read outside
    inside = {n for op in names[:3] for n in g[op].meta["nodes"]}
    assert set(first.outputs) <= inside
    rest = build_segment(c, names[3:])
    assert set(rest.inputs) <= set(first.outputs) | {"x"}
    env = {"x": inputs[0]}
    with torch.no_grad():
        env.update(zip(first.outputs, first.module(*[env[n] for n in first.inputs])))
        env.update(zip(rest.outputs, rest.module(*[env[n] for n in rest.inputs])))
        ref = model(*inputs)
    out = assemble_output(c, env)
    assert close(out[0], ref[0]) and close(out[1], ref[1])
    # parameters are shared with the captured module, not copied
    gm_params = {p.data_ptr() for p in c.gm.parameters()}
    assert {p.data_ptr() for p in first.module.parameters()} <= gm_params


def test_output_names_structure():
    model, inputs = make(Branchy)
    c = capture(model, inputs)
    names = output_names(c)
    assert isinstance(names, tuple) and len(names) == 2 and all(isinstance(n, str) for n in names)
    with pytest.raises(HiosError, match="not computed"):
        assemble_output(c, {})


def test_bad_segments():
    model, inputs = make(Branchy)
    c = capture(model, inputs)
    names = [c.graph.ops[i].name for i in c.graph.topo]
    with pytest.raises(HiosError, match="unknown operator"):
        build_segment(c, ["nope"])
    with pytest.raises(HiosError, match="topological order"):
        build_segment(c, [names[1], names[0]])
    with pytest.raises(HiosError, match="input"):
        run_by_operators(c)


def test_random_wirings_run_by_operators():
    """Random DAG-shaped networks (small RandWire configurations): fusion keeps every fx node in
    exactly one operator, operators stay in a topological order, and running them one by one
    equals the model."""
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st

    from hios.frontend.randwire import RandWire

    @settings(max_examples=8, deadline=None)
    @given(nodes=st.integers(8, 16), k=st.sampled_from([2, 4]), p=st.floats(0.0, 1.0), seed=st.integers(0, 10**6))
    def check(nodes, k, p, seed):
        torch.manual_seed(seed)
        model = randomize_bn(RandWire(channels=8, nodes=nodes, k=k, p=p, seed=seed, num_classes=10).eval(), seed)
        x = torch.randn(1, 3, 32, 32)
        c = capture(model, (x,), "rw")
        g = c.graph
        owned = [n for op in g.ops for n in op.meta["nodes"]]
        assert len(owned) == len(set(owned)) == g.meta["fx_nodes"]
        pos = {op.name: i for i, op in enumerate(g.ops)}
        assert all(pos[e.src] < pos[e.dst] for e in g.edges)
        # chain fusion: no edge joins an operator with one consumer to an operator with one producer
        for e in g.edges:
            u, v = g.index[e.src], g.index[e.dst]
            assert len(g.succs[u]) > 1 or len(g.preds[v]) > 1
        with torch.no_grad():
            ref = model(x)
        assert close(run_by_operators(c, x), ref)

    check()
