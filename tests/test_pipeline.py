"""The library pipeline: ``hios.plan_model`` captures once, costs and schedules; ``hios.optimize``
returns a module equal to ``model(x)`` that carries its plan; ``hios.load`` runs a saved plan;
typed options refuse bad values with one line; the CLI's ``run --model`` captures once too."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import hios  # noqa: E402
from hios.errors import HiosError  # noqa: E402
from hios.options import CostOptions, RunOptions, ScheduleOptions, TimingOptions  # noqa: E402
from hios.testing.dist_models import random_dag  # noqa: E402


@pytest.fixture(scope="module")
def model_x():
    return random_dag(image_size=16, nodes=14, edges=22, layers=3), torch.randn(1, 3, 16, 16)


@pytest.fixture
def count_captures(monkeypatch):
    import importlib
    cap = importlib.import_module("hios.frontend.capture")  # the module (hios.frontend.capture is also a function)
    calls = []
    real = cap.capture

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(cap, "capture", counting)
    return calls


def test_optimize_equals_model_and_carries_its_plan(model_x, count_captures, tmp_path):
    model, x = model_x
    fast = hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100", algorithm="all")
    assert len(count_captures) == 1  # captured once, reused by the runtime
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
    plan = fast.plan
    assert plan.schedule.algorithm == min(plan.predicted, key=plan.predicted.get)
    from importlib.util import find_spec
    exact = {"optimal"} if find_spec("ortools") else set()  # "all" includes optimal: 14 operators fit it
    assert set(plan.predicted) == {"sequential", "hios-lp", "hios-mr", "ios", "heft"} | exact
    text = fast.explain(file=open(tmp_path / "explain.txt", "w"))
    assert "hios-lp" in text and "lower bound" in text and "runs on cpu,cpu" in text
    path = tmp_path / "plan.json"
    fast.save(path)
    assert json.loads(path.read_text())["format"] == "hios-plan"
    again = hios.load(path, model, x, devices="cpu,cpu")
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), rtol=1e-4, atol=1e-5)
    assert again.plan.schedule.stages == plan.schedule.stages


def test_plan_model_steps_are_library_calls(model_x):
    model, x = model_x
    planned = hios.plan_model(model, x, schedule=ScheduleOptions(gpus=3, algorithms=("hios-lp", "heft")),
                              cost=CostOptions(source="H100"))
    assert planned.plan.cost_source == "analytic:h100"
    assert set(planned.comparison.results) == {"hios-lp", "heft"}
    assert planned.plan.machine.gpus == 3 and planned.captured.graph is not None


def test_load_refuses_a_plan_of_another_model(model_x, tmp_path):
    model, x = model_x
    path = tmp_path / "plan.json"
    hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100").save(path)
    other = random_dag(image_size=16, nodes=10, edges=14, layers=2, seed=3)
    with pytest.raises(HiosError, match="plan does not match the model"):
        hios.load(path, other, x, devices="cpu,cpu")


@pytest.mark.parametrize("make, match", [
    (lambda: ScheduleOptions(gpus=0), "gpus must be at least 1"),
    (lambda: ScheduleOptions(algorithms="hios-lp,nope"), "unknown algorithm 'nope'"),
    (lambda: ScheduleOptions(time_limit=float("inf")), "time_limit must be positive"),
    (lambda: ScheduleOptions(link="carrier-pigeon"), "link 'carrier-pigeon'"),
    (lambda: CostOptions(alpha=2), "alpha must be in"),
    (lambda: CostOptions(kernels="fast"), "kernels 'fast'"),
    (lambda: RunOptions(devices="gpu:0"), "unsupported device"),
    (lambda: RunOptions(sync="never"), "sync 'never'"),
    (lambda: RunOptions(mode="graph").resolve(["cpu"]), "needs CUDA devices"),
    (lambda: TimingOptions(repeats=0), "repeats must be an integer >= 1"),
])
def test_options_refuse_bad_values_in_one_line(make, match):
    """One line naming the option by its field (the CLI maps fields to its flags)."""
    with pytest.raises(HiosError, match=match) as e:
        make()
    assert "\n" not in str(e.value) and "--" not in str(e.value) and "\x1f" not in str(e.value)


def test_run_options_defaults_follow_the_devices():
    cpu = RunOptions().resolve(["cpu", "cpu"])
    assert (cpu.kernels, cpu.mode, cpu.channels_last) == ("eager", "stream", False)
    gpu = RunOptions().resolve(["cuda:0"])
    assert (gpu.kernels, gpu.mode, gpu.channels_last) == ("inductor", "graph", True)


def test_sync_stage_reaches_the_program(model_x):
    model, x = model_x
    planned = hios.plan_model(model, x, schedule=ScheduleOptions(gpus=2), cost=CostOptions(source="h100"))
    kw = dict(captured=planned.captured)
    data = hios.pipeline.run_plan(model, x, planned.plan, RunOptions(devices="cpu,cpu", sync="data"), **kw)
    stage = hios.pipeline.run_plan(model, x, planned.plan, RunOptions(devices="cpu,cpu", sync="stage"), **kw)
    assert stage.program.sync == "stage" and data.program.sync == "data"
    with torch.no_grad():
        assert torch.allclose(stage(x), model(x), rtol=1e-4, atol=1e-5)


def test_cli_run_model_form_captures_once(count_captures, capsys):
    from hios.cli import main
    rc = main(["run", "--model", "hios.testing.dist_models:random_dag", "--image-size", "16", "--cost", "h100",
               "--devices", "cpu", "--json", "--no-baselines", "--warmup", "0", "--repeats", "2", "--inner", "1"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["check"]["ok"]
    assert len(count_captures) == 1


@pytest.mark.parametrize("right", [True, False])
def test_one_rule_for_a_torch_compile_winner(model_x, monkeypatch, right):
    """choose_plan (both CLI commands and hios.optimize): the plan keeps the fastest hios candidate; a
    faster torch.compile is the module to run only when it matches model(x)."""
    import hios.runtime.local.verify as verify
    import hios.runtime.measure.choose as choose
    from hios.pipeline import choose_plan, plan_model
    from hios.selection import Selection
    model, x = model_x
    plan = plan_model(model, x, schedule=ScheduleOptions(gpus=2), cost=CostOptions(source="h100")).plan
    sel = Selection("torch.compile", {"torch.compile": 1.0, "hios-lp": 2.0}, {}, {"hios-lp": 2.0}, 2.0, 0.1)
    built = {"torch.compile": "compiled", "hios-lp": "planned"}
    monkeypatch.setattr(choose, "choose_by_measurement", lambda *a, **k: (sel, built, {"hios-lp": plan.schedule}))
    monkeypatch.setattr(verify, "check_against", lambda *a, **k: type("C", (), {"ok": right, "rel": 0.5})())
    if right:
        c = choose_plan(model, x, plan, check=True)
    else:
        with pytest.warns(UserWarning, match="torch.compile differed from model"):
            c = choose_plan(model, x, plan, check=True)
    assert c.best == "hios-lp" and c.plan.meta["chosen_by_measurement"] == "hios-lp" and c.plan_module == "planned"
    assert c.module == ("compiled" if right else "planned") and "torch.compile measured faster" in c.note


def test_optimize_can_choose_by_measurement(model_x):
    model, x = model_x
    fast = hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100", choose=2)
    sel = fast.selection
    assert sel is not None and sel.winner in sel.measured_ms and len(sel.measured_ms) >= 2
    assert fast.plan.meta["chosen_by_measurement"] in sel.measured_ms
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_optimize_leaves_torch_flags_and_runs_calls_in_its_precision(model_x):
    """The library flips no global flag for good: hios.optimize restores torch's TF32 flags, and
    the module it returns runs each call in the precision it was planned for."""
    from hios.cost.timing import precision, precision_state
    from hios.pipeline import Optimized
    model, x = model_x
    with precision(False):
        fast = hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100", tf32=True)
        assert precision_state() == "fp32" and fast.tf32 is True and fast.runtime.tf32 is True
        with torch.no_grad():
            assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
        assert precision_state() == "fp32"
        assert Optimized(lambda *a: precision_state(), fast.plan, tf32=True)(x) == "tf32"
        assert precision_state() == "fp32"
