"""Model zoo: names, specs, determinism, clear errors (CPU, small images)."""

import sys

import pytest

torch = pytest.importorskip("torch")

from hios import HiosError  # noqa: E402
from hios.frontend import zoo  # noqa: E402
from hios.frontend.capture import capture  # noqa: E402

from test_capture import one_thread  # noqa: E402,F401


def test_unknown_name_lists_models():
    with pytest.raises(HiosError) as e:
        zoo.build("resnet9000", 64)
    for name in zoo.MODELS:
        assert name in str(e.value)


@pytest.mark.parametrize("size,batch", [(0, 1), (64, 0), (-3, 1)])
def test_bad_sizes(size, batch):
    with pytest.raises(HiosError):
        zoo.build("randwire", size, batch)


def test_randwire_deterministic_and_rng_untouched():
    state = torch.random.get_rng_state()
    m1, (x1,) = zoo.build("randwire", 32, batch=2)
    m2, (x2,) = zoo.build("randwire", 32, batch=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert x1.shape == (2, 3, 32, 32) and torch.equal(x1, x2)
    for (n1, p1), (n2, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert not m1.training


def test_randwire_is_a_random_dag():
    from hios.frontend.randwire import ws_dag

    preds = ws_dag(32, 4, 0.75, 0)
    assert preds == ws_dag(32, 4, 0.75, 0)
    assert all(u < v for v, ps in enumerate(preds) for u in ps)
    assert sum(map(len, preds)) == 32 * 4 // 2  # a WS graph keeps n*k/2 edges
    assert preds != ws_dag(32, 4, 0.75, 1)
    m, inputs = zoo.build("randwire", 32)
    c = capture(m, inputs, "randwire")
    assert c.method == "symbolic_trace"
    g = c.graph
    # wide: many operators have several predecessors or successors
    assert len(g) > 60 and sum(1 for i in range(len(g)) if len(g.succs[i]) > 1) > 20


def test_factory_spec_without_arguments():
    m, (x,) = zoo.build("torch.nn:Identity", 16)
    assert isinstance(m, torch.nn.Identity) and x.shape == (1, 3, 16, 16)


def test_factory_spec_with_arguments(tmp_path, monkeypatch):
    (tmp_path / "hios_user_model.py").write_text(
        "import torch\n"
        "def make(image_size, batch):\n"
        "    assert image_size == 20 and batch == 3\n"
        "    return torch.nn.Conv2d(3, 4, 3)\n"
        "def bad():\n"
        "    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m, (x,) = zoo.build("hios_user_model:make", 20, 3)
    assert isinstance(m, torch.nn.Conv2d) and x.shape == (3, 3, 20, 20)
    with pytest.raises(HiosError, match="not a torch.nn.Module"):
        zoo.build("hios_user_model:bad", 20)


@pytest.mark.parametrize("spec,match", [
    ("no_such_package_xyz.mod:f", "cannot import"),
    ("torch.nn:NoSuchThing", "no attribute"),
    ("math:pi", "not callable"),
    ("torch.nn:", "package.module:factory"),
])
def test_bad_specs(spec, match):
    with pytest.raises(HiosError, match=match):
        zoo.build(spec, 16)


def test_missing_torchvision_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(HiosError, match=r"hios\[vision\]"):
        zoo.build("googlenet", 64)


def test_missing_timm_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(HiosError, match=r"hios\[timm\]"):
        zoo.build("nasnetalarge", 64)


def test_image_too_small_names_the_cause():
    pytest.importorskip("torchvision")
    m, inputs = zoo.build("inception_v3", 32)
    with pytest.raises(HiosError, match=r"inception_v3 does not run on input\(s\) of shape \(1, 3, 32, 32\)"):
        capture(m, inputs, "inception_v3")


@pytest.mark.parametrize("name,size", [("squeezenet1_1", 64), ("googlenet", 64), ("inception_v3", 80)])
def test_torchvision_models_build(name, size):
    pytest.importorskip("torchvision")
    m, (x,) = zoo.build(name, size)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 1000) and y.std() > 1e-2  # signal survives the initialization
