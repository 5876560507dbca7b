"""``hios optimize`` end to end on CPU, and the plan file."""

import json

import pytest

torch = pytest.importorskip("torch")

from cli_helpers import run  # noqa: E402
from hios.formats import save_graph  # noqa: E402
from hios.graph import Graph, Operator  # noqa: E402
from hios.plan import Plan, load_plan  # noqa: E402
from hios.schedule import load_schedule  # noqa: E402

from test_capture import one_thread  # noqa: E402,F401

NO_GPU = not torch.cuda.is_available()
MODEL = ["--model", "hios_opt_model:make", "--image-size", "16"]


@pytest.fixture(autouse=True)
def user_model(tmp_path, monkeypatch):
    (tmp_path / "hios_opt_model.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())\n"
        "        self.branches = nn.ModuleList(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),\n"
        "                                                    nn.Conv2d(16, 16, 3, padding=1)) for _ in range(4))\n"
        "        self.fc = nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        y = self.stem(x)\n"
        "        z = torch.cat([b(y) for b in self.branches], 1)\n"
        "        return self.fc(z.mean((2, 3)))\n"
        "def make(image_size, batch):\n"
        "    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def errors(err):
    """The error lines of stderr (progress lines such as 'capturing ...' are not errors)."""
    return [ln for ln in err.strip().splitlines() if ln.startswith("hios")]


@pytest.mark.skipif(not NO_GPU, reason="checks the default on a machine without a GPU")
def test_optimize_writes_plan(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    code, out, err = run(capsys, "optimize", *MODEL, "--gpus", "2", "--algo", "sequential,hios-lp,heft",
                         "-o", plan_path, "--gantt", tmp_path / "g.png")
    assert code == 0, err
    assert "hios-lp" in out and "heft" in out and "lower bound" in out
    assert "analytic H100" in err
    plan = load_plan(plan_path)
    assert plan.cost_source == "analytic:h100" and plan.machine.gpus == 2
    assert set(plan.predicted) == {"sequential", "hios-lp", "heft"}
    assert plan.schedule.algorithm == min(plan.predicted, key=plan.predicted.get)
    assert plan.lower_bounds["value"] <= min(plan.predicted.values()) + 1e-9
    assert plan.model == {"name": "hios_opt_model:make", "image_size": 16, "batch": 1, "dtype": "float32"}
    assert sorted(plan.schedule.operators()) == sorted(plan.graph.names)
    # 4 parallel branches: at least two operators get their own stage on different GPUs
    assert len([g for g in plan.schedule.stages if g]) == 2
    assert (tmp_path / "g.png").stat().st_size > 0
    # load_schedule reads plans too
    assert load_schedule(plan_path, plan.graph, 2).stages == plan.schedule.stages
    # round trip
    again = Plan.from_dict(json.loads(plan_path.read_text()))
    assert again.to_dict() == plan.to_dict()


def test_optimize_json_is_the_simulate_object(tmp_path, capsys):
    code, out, err = run(capsys, "optimize", *MODEL, "--cost", "a100", "--gpus", "2", "--json")
    assert code == 0, err
    d = json.loads(out)
    for key in ("graph", "gpus", "lower_bound", "critical_path", "work_per_gpu", "sequential", "results"):
        assert key in d
    assert d["cost_source"] == "analytic:a100" and d["gpus"] == 2


def test_optimize_with_a_profile_file(tmp_path, capsys):
    from hios.frontend.capture import capture
    from hios.frontend.zoo import build

    model, example = build("hios_opt_model:make", 16)
    c = capture(model, example, "net")
    g = c.graph.with_costs([1.0] * len(c.graph))
    g.meta = {"profile": {"inputs": [{"shape": [1, 3, 16, 16], "dtype": "torch.float32"}]}}
    prof = tmp_path / "prof.json"
    save_graph(g, prof)
    code, out, err = run(capsys, "optimize", *MODEL, "--cost", prof, "--algo", "sequential", "-o",
                         tmp_path / "p.json")
    assert code == 0, err
    plan = load_plan(tmp_path / "p.json")
    assert plan.cost_source == f"profile:{prof}"
    assert plan.predicted["sequential"] == pytest.approx(len(g))
    # same profile, other image size: refused
    code, out, err = run(capsys, "optimize", "--model", "hios_opt_model:make", "--image-size", "20", "--cost", prof)
    assert code == 2 and "input shape" in err and len(errors(err)) == 1
    # a profile of another model: the first mismatching operator is named
    save_graph(Graph([Operator("conv_x", 1.0)], []), tmp_path / "other.json")
    code, out, err = run(capsys, "optimize", *MODEL, "--cost", tmp_path / "other.json")
    assert code == 2 and "does not match" in err and repr(c.graph.names[0]) in err


@pytest.mark.parametrize("argv,match", [
    (["--model", "no_such_model", "--image-size", "64"], "unknown model"),
    (["--model", "hios_opt_model:make", "--image-size", "16", "--cost", "/no/such/file.json"], "neither"),
    (["--model", "hios_opt_model:make", "--image-size", "16", "--cost", "tpu"], "neither"),
    (["--model", "hios_opt_model:make", "--image-size", "16", "-o", "plan.txt"], ".json"),
    (["--model", "hios_opt_model:make", "--image-size", "16", "--algo", "magic"], "unknown algorithm"),
    (["--model", "hios_opt_model:make", "--image-size", "0"], "image size"),
])
def test_bad_input_one_line_exit_2(capsys, argv, match):
    code, out, err = run(capsys, "optimize", *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(errors(err)) == 1 and match in lines[-1] and lines[-1].startswith("hios optimize: error:")


def test_unreadable_profile(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out, err = run(capsys, "optimize", *MODEL, "--cost", bad)
    assert code == 2 and "invalid JSON" in err


def test_input_too_small(capsys):
    pytest.importorskip("torchvision")
    code, out, err = run(capsys, "optimize", "--model", "inception_v3", "--image-size", "32")
    assert code == 2 and "does not run on input(s) of shape (1, 3, 32, 32)" in err


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without a GPU")
@pytest.mark.parametrize("extra", [["--device", "cuda"], ["--cost", "profile"]])
def test_gpu_requests_without_gpu(capsys, extra):
    code, out, err = run(capsys, "optimize", *MODEL, *extra)
    assert code == 2 and ("CUDA" in err or "GPU" in err)


def test_load_plan_errors(tmp_path):
    from hios import HiosError

    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "hios-graph"}))
    with pytest.raises(HiosError, match="not a hios plan"):
        load_plan(p)
    with pytest.raises(HiosError, match="cannot read"):
        load_plan(tmp_path / "missing.json")


def test_profile_on_cpu(tmp_path, capsys, monkeypatch):
    """--cost profile with --device cpu goes through the profiler (wall-clock timing on the CPU)."""
    pytest.importorskip("hios.cost.profiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out, err = run(capsys, "optimize", *MODEL, "--device", "cpu", "--cost", "profile", "--gpus", "2",
                         "-o", tmp_path / "p.json")
    assert code == 0, err
    plan = load_plan(tmp_path / "p.json")
    assert plan.cost_source.startswith("profile:")
    assert all(op.cost > 0 for op in plan.graph.ops)
    assert plan.graph.meta["profile"]["device_type"] == "cpu"


def test_save_graph_json_and_txt(tmp_path, capsys):
    from hios.formats import load_graph

    for suffix in (".json", ".txt"):
        out = tmp_path / f"g{suffix}"
        code, _, err = run(capsys, "optimize", *MODEL, "--cost", "h100", "--save-graph", out)
        assert code == 0, err
        g = load_graph(out)
        assert len(g) > 1 and all(op.cost > 0 for op in g.ops)
        if suffix == ".txt":
            assert all(e.time is not None and e.time > 0 for e in g.edges)
    code, _, err = run(capsys, "optimize", *MODEL, "--save-graph", tmp_path / "g.csv")
    assert code == 2 and "unknown graph format" in err


def test_alpha_overrides_a_measured_fit(tmp_path, capsys):
    prof = "benchmarks/profiles/inception_v3-1280-eager-h100.json"
    out = tmp_path / "p.json"
    code, _, err = run(capsys, "optimize", "--model", "inception_v3", "--image-size", "1280", "--cost", prof,
                       "--alpha", "0.25", "-o", out)
    assert code == 0, err
    assert load_plan(out).stage_model["alpha"] == 0.25
