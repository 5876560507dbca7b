"""Fuzzing suite: corrupted graph (.json, .txt), schedule, plan, profile and run-record files (whole
files and their nested fields), FIFOs / device symlinks / folders / oversize files as inputs, and random
command lines for generate / simulate / optimize / profile.  One property everywhere: exit 0 with a valid
result, or exit 2 with exactly one line on stderr and no new file in the working folder.

Commands run in-process (``hios.cli.main`` in a fresh temporary folder, see fuzz_strategies.run_cli);
a few cases run the real ``python -m hios`` in a subprocess.  ``pytest --slow`` (or
``HYPOTHESIS_PROFILE=slow``) runs 10 times the examples; ``HIOS_FUZZ_REPORT=FILE`` writes the outcome
counts per target.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_strategies import (SPECIAL_INPUTS, argv_for, check_clean, corrupt_json, corrupt_nested, corrupt_txt, examples,
                             record, run_cli)
from hios.errors import HiosError
from hios.formats import graph_to_dict, read_txt, write_txt
from hios.generate import layered_dag
from hios.machine import Machine
from hios.plan import Plan, load_plan
from hios.schedule import Schedule

TINY = "hios.testing.dist_models:random_dag"
GRAPH = layered_dag(8, 12, 2, 0.5, 3)
GRAPH_TXT = write_txt(GRAPH)
GRAPH_JSON = json.dumps(graph_to_dict(GRAPH), indent=1)
SCHEDULE = Schedule.from_assignment(GRAPH, {op.name: k % 2 for k, op in enumerate(GRAPH.ops)}, 2)
PLAN = Plan({"name": TINY, "image_size": 16, "batch": 1, "dtype": "float32"}, "analytic:h100", Machine(2), GRAPH,
            SCHEDULE, {"custom": 1.0}, {"value": 0.5}, None, {"algorithm": "custom"})


def fuzz(n: int):
    return settings(max_examples=examples(n), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def simulate_result_ok(out: str) -> None:
    d = json.loads(out)
    for r in d["results"]:
        assert math.isfinite(r["latency"]) and r["latency"] >= 0


# -- corrupted files ------------------------------------------------------------------------------

@fuzz(60)
@given(corrupt_json(graph_to_dict(GRAPH)))
def test_graph_json(text):
    code, out, err, new, _ = run_cli(["simulate", "g.json", "--gpus", "2", "--algo", "hios-lp,heft", "--json"],
                                     {"g.json": text})
    if check_clean("graph .json (simulate)", code, err, new):
        simulate_result_ok(out)


@fuzz(60)
@given(corrupt_txt(GRAPH_TXT))
def test_graph_txt(text):
    code, out, err, new, _ = run_cli(["simulate", "g.txt", "--gpus", "2", "--algo", "sequential,hios-lp,ios",
                                      "--json"], {"g.txt": text})
    if check_clean("graph .txt (simulate)", code, err, new):
        simulate_result_ok(out)


@fuzz(40)
@given(corrupt_json(SCHEDULE.to_dict()))
def test_schedule(text):
    code, out, err, new, files = run_cli(["simulate", "g.json", "--gpus", "2", "--schedule", "s.json", "--json",
                                          "-o", "out.json"], {"g.json": GRAPH_JSON, "s.json": text})
    if check_clean("schedule .json (simulate --schedule)", code, err, new):
        simulate_result_ok(out)
        saved = Schedule.from_dict(json.loads(files["out.json"]))
        assert sorted(saved.operators()) == sorted(GRAPH.names)


def read_or_refused(text: str, name: str, reader, target: str):
    """``reader(path)`` of a file ``name`` holding ``text``: its result, or None after one HiosError
    line that names the file (recorded for ``target``)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return reader(p)
        except HiosError as e:
            assert "\n" not in str(e) and str(e).startswith(str(p)), str(e)
            record(target, "refused (one line)")
            return None


@fuzz(40)
@given(corrupt_json(PLAN.to_dict()))
def test_plan(text):
    plan = read_or_refused(text, "p.json", load_plan, "plan .json (load_plan)")
    if plan is not None:
        assert sorted(plan.schedule.operators()) == sorted(plan.graph.names)
        record("plan .json (load_plan)", "loaded (valid plan)")
    code, out, err, new, _ = run_cli(["simulate", "g.json", "--gpus", "2", "--schedule", "p.json", "--json"],
                                     {"g.json": GRAPH_JSON, "p.json": text})
    if check_clean("plan .json (simulate --schedule)", code, err, new):
        simulate_result_ok(out)


@pytest.fixture(scope="module")
def profile_text(tmp_path_factory):
    """A real profile of the tiny model, measured on the CPU (no cache)."""
    pytest.importorskip("torch")
    code, _, err, _, files = run_cli(["profile", "--model", TINY, "--image-size", "16", "--device", "cpu",
                                      "--no-cache", "--repeats", "1", "--warmup", "0", "--groups", "0",
                                      "--no-progress", "-o", "prof.json"])
    assert code == 0, err
    return json.loads(files["prof.json"])


@fuzz(30)
@given(data=st.data())
def test_profile_simulate(profile_text, data):
    text = data.draw(corrupt_json(profile_text))
    code, out, err, new, _ = run_cli(["simulate", "prof.json", "--gpus", "2", "--json"], {"prof.json": text})
    if check_clean("profile .json (simulate)", code, err, new):
        simulate_result_ok(out)


@fuzz(6)
@given(data=st.data())
def test_profile_optimize(profile_text, data):
    target = "profile .json (optimize --cost FILE)"
    text = data.draw(corrupt_json(profile_text))
    code, out, err, new, files = run_cli(["optimize", "--model", TINY, "--image-size", "16", "--cost", "prof.json",
                                          "-o", "plan.json", "--json"], {"prof.json": text})
    if code == 2 and err.count("\n") > 1:  # refused only after the capture: progress lines come first
        assert err.splitlines()[-1].startswith("hios optimize: error: ") and not new, err
        record(target, "exit 2 after progress lines (error last, no file)")
        return
    if check_clean(target, code, err, new):
        assert json.loads(files["plan.json"])["format"] == "hios-plan"


# -- nested fields: plans, profiles, run records ------------------------------------------------------

GROUPS = [{"ops": [GRAPH.ops[0].name, GRAPH.ops[1].name], "costs": [1.0, 2.0], "time": 2.5},
          {"ops": [GRAPH.ops[2].name, GRAPH.ops[3].name, GRAPH.ops[4].name], "costs": [0.5, 0.5, 1.0], "time": 1.5}]
PROFILE_META = {"device": "cpu: fuzz", "device_type": "cpu", "kernels": "eager", "precision": "fp32",
                "memory_format": "contiguous", "freezing": False, "method": "wall", "groups": GROUPS,
                "inputs": [{"shape": [1, 3, 16, 16], "dtype": "torch.float32"}],
                "concurrency": {"type": "concurrency", "beta": 0.4, "overhead_ms": 0.01, "fit": {}},
                "stage_model": {"type": "measured", "alpha": 0.5, "groups": [{"costs": [1.0, 2.0], "time": 2.5}]},
                "feedback": {"rounds": 1, "source": "run.json"}}
RICH = {**PLAN.to_dict(), "stage_model": PROFILE_META["stage_model"]}
RICH["graph"] = {**RICH["graph"], "meta": {"profile": PROFILE_META, "inputs": [{"name": "x", "shape": [1, 3, 16, 16],
                                                                              "dtype": "float32"}]}}
PLAN_NESTED = [("stage_model",), ("model",), ("graph", "meta"), ("schedule",), ("predicted",), ("machine",),
               ("lower_bounds",)]


@fuzz(60)
@given(corrupt_nested(RICH, PLAN_NESTED))
def test_plan_nested(text):
    """Mutations inside a plan's stage model, model, graph meta (its profile), schedule and machine:
    load_plan gives a valid plan whose stage model builds, or one HiosError line."""
    from hios.cost.costmodel import stage_model_from_dict
    target = "plan .json, nested fields (load_plan)"
    plan = read_or_refused(text, "p.json", load_plan, target)
    if plan is None:
        return
    if plan.stage_model is not None:
        stage_model_from_dict(plan.stage_model)
    assert sorted(plan.schedule.operators()) == sorted(plan.graph.names)
    record(target, "loaded (valid plan)")
    code, out, err, new, _ = run_cli(["simulate", "g.json", "--gpus", "2", "--schedule", "p.json", "--json"],
                                     {"g.json": GRAPH_JSON, "p.json": text})
    if check_clean("plan .json, nested fields (simulate --schedule)", code, err, new):
        simulate_result_ok(out)


@fuzz(60)
@given(corrupt_nested({**graph_to_dict(GRAPH), "meta": {"profile": PROFILE_META}}, [("meta", "profile")]))
def test_profile_nested(text):
    """Mutations inside ``meta.profile``: the graph loads and calibrates (hios.cost.fitting, the consumer
    that crashed), or one line; ``simulate`` of it is clean."""
    from hios.cost.fitting import calibrate
    from hios.formats import load_graph
    target = "profile .json, nested meta.profile (load + calibrate)"
    g = read_or_refused(text, "prof.json", load_graph, target)
    if g is not None:
        out, stage = calibrate(g)
        assert all(math.isfinite(op.cost) for op in out.ops) and 0 <= stage.alpha <= 1
        record(target, "loaded and calibrated")
    code, out, err, new, _ = run_cli(["simulate", "prof.json", "--gpus", "2", "--json"], {"prof.json": text})
    if check_clean("profile .json, nested meta.profile (simulate)", code, err, new):
        simulate_result_ok(out)


@pytest.fixture(scope="module")
def run_record(tmp_path_factory):
    """The trace of one run of a 2-GPU plan of the tiny model on two CPU devices (its run record inside)."""
    pytest.importorskip("torch")
    code, _, err, _, files = run_cli(["optimize", "--model", TINY, "--image-size", "16", "--gpus", "2", "--cost",
                                      "h100", "-o", "p.json"])
    assert code == 0, err
    code, _, err, _, traced = run_cli(["run", "p.json", "--model", TINY, "--devices", "cpu,cpu", "--trace", "t.json",
                                       "--trace-calls", "1", "--no-baselines", "--warmup", "0", "--repeats", "1",
                                       "--inner", "1"], {"p.json": files["p.json"]})
    assert code == 0, err
    return json.loads(traced["t.json"])


@fuzz(40)
@given(data=st.data())
def test_run_record_nested(run_record, data):
    """Mutations inside a run record's segments, settings, version and embedded graph:
    ``hios profile --from-run`` writes a valid profile or says one line."""
    text = data.draw(corrupt_nested(run_record, [("hiosRun", "segments"), ("hiosRun", "settings"),
                                                 ("hiosRun", "version"), ("hiosRun", "graph", "meta"),
                                                 ("hiosRun", "model")]))
    code, out, err, new, files = run_cli(["profile", "--from-run", "run.json", "-o", "out.json"], {"run.json": text})
    if check_clean("run record .json, nested fields (profile --from-run)", code, err, new):
        from hios.formats import graph_from_dict
        g = graph_from_dict(json.loads(files["out.json"]))
        assert all(math.isfinite(op.cost) for op in g.ops)


# -- inputs that are not regular files of a sane size -----------------------------------------------------

SPECIAL_TARGETS = {
    "graph (simulate)": ({}, ["simulate", "in.json"]),
    "schedule (simulate --schedule)": ({"g.json": GRAPH_JSON}, ["simulate", "g.json", "--schedule", "in.json"]),
    "plan (run)": ({}, ["run", "in.json", "--model", TINY]),
    "run record (profile --from-run)": ({}, ["profile", "--from-run", "in.json", "-o", "out.json"]),
    "profile (optimize --cost)": ({}, ["optimize", "--model", TINY, "--image-size", "16", "--cost", "in.json"]),
}


@pytest.mark.parametrize("kind", SPECIAL_INPUTS)
@pytest.mark.parametrize("target", sorted(SPECIAL_TARGETS))
def test_special_inputs(target, kind):
    """A FIFO, a symlink to /dev/zero, a folder or an oversize file as input: one line, at once."""
    if target.startswith(("plan", "profile")):
        pytest.importorskip("torch")
    inputs, argv = SPECIAL_TARGETS[target]
    code, out, err, new, _ = run_cli(argv, inputs, {"in.json": kind})
    check_clean(f"{kind} as {target}", code, err, new)
    assert code == 2


# -- random command lines ---------------------------------------------------------------------------

GENERATE = {"--nodes": "int", "--edges": "int", "--layers": "int", "--comm-ratio": "float", "--seed": "int",
            "-o": ["g.txt", "g.json", "g.csv", "nodir/g.txt", "", "g.txt/x.json"]}


@fuzz(40)
@given(argv_for("generate", [], GENERATE))
def test_generate_argv(argv):
    argv = argv + (["-o", "out.txt"] if "-o" not in argv and len(argv) % 2 else [])
    code, out, err, new, files = run_cli(argv)
    if check_clean("generate (argv)", code, err, new):
        (name,) = [n for n in new]
        from hios.formats import graph_from_dict
        text = files[name].decode()
        g = read_txt(text) if name.endswith(".txt") else graph_from_dict(json.loads(text))
        assert len(g) >= 3


SIMULATE = {"--gpus": "int", "--alpha": "float", "--window": "int", "--streams": "int", "--time-limit": "float",
            "--algo": ["hios-lp", "sequential", "heft", "ios", "hios-mr", "all", "hios-lp,heft", "", ",", "nope",
                       "HIOS-LP"],
            "--link": ["pcie4", "nvlink-h100", "usb"],
            "--schedule": ["s.json", "missing.json", "g.txt"],
            "-o": ["out.json", "out.txt", "nodir/o.json", "g.txt/o.json"],
            "--trace": ["t.json", "t.csv", "nodir/t.json"],
            "--gantt": ["g.svg", "g.xyz", "nodir/g.png", "g.txt"]}


@fuzz(60)
@given(argv_for("simulate", ["g.txt"], SIMULATE, ["--json", "--no-intra", "--serialize-links"]))
def test_simulate_argv(argv):
    code, out, err, new, files = run_cli(argv, {"g.txt": GRAPH_TXT, "s.json": json.dumps(SCHEDULE.to_dict())})
    if check_clean("simulate (argv)", code, err, new):
        if "--json" in argv:
            simulate_result_ok(out)
        if "out.json" in files:
            Schedule.from_dict(json.loads(files["out.json"]))


OPTIMIZE = {"--image-size": ["16", "0", "-3", "30000", "4096", "x"], "--batch": ["1", "0", "2000", "x"],
            "--gpus": "int", "--cost": ["h100", "H100", "a100", "profile", "missing.json", "nope"],
            "--algo": ["hios-lp", "heft", "", "nope", "all"], "--window": "int",
            "-o": ["p.json", "p.txt", "nodir/p.json"], "--save-graph": ["g.json", "g.txt", "g.csv", "nodir/g.json"]}


@fuzz(8)
@given(argv_for("optimize", ["--model", TINY], OPTIMIZE, ["--json", "--no-intra"]))
def test_optimize_argv(argv):
    target = "optimize (argv, tiny model)"
    pytest.importorskip("torch")
    if "--image-size" not in argv:
        argv = argv + ["--image-size", "16"]
    code, out, err, new, files = run_cli(argv)
    if code == 2 and err.count("\n") > 1:  # refused only after the capture: progress lines come first
        assert err.splitlines()[-1].startswith("hios optimize: error: ") and not new, err
        record(target, "exit 2 after progress lines (error last, no file)")
        return
    if check_clean(target, code, err, new):
        for name, data in files.items():
            if name.endswith(".json"):
                assert json.loads(data)["format"] in ("hios-plan", "hios-graph")


PROFILE = {"--image-size": ["16", "0", "30000", "x"], "--device": ["cpu", "cuda:9", "tpu", ""],
           "--repeats": ["1", "0", "-1", "x"], "--groups": ["0", "-1"], "--cache-dir": ["g.txt", "g.txt/x", "cache"],
           "-o": ["p.json", "p.txt", "nodir/p.json"]}


@fuzz(4)
@given(argv_for("profile", ["--model", TINY], PROFILE))
def test_profile_argv(argv):
    target = "profile (argv, tiny model)"
    pytest.importorskip("torch")
    argv = argv + ["--no-progress", "--warmup", "0", "--groups", "0", "--repeats", "1"]
    if "--image-size" not in argv:
        argv += ["--image-size", "16"]
    if "--cache-dir" not in argv:
        argv.append("--no-cache")  # never the user's cache
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    if "-o" not in argv:
        argv += ["-o", "p.json"]
    code, out, err, new, files = run_cli(argv, {"g.txt": GRAPH_TXT})
    if code == 2 and err.count("\n") > 1:
        assert err.splitlines()[-1].startswith("hios profile: error: ") and not new, err
        record(target, "exit 2 after progress lines (error last, no file)")
        return
    if check_clean(target, code, err, new):
        assert json.loads(files["p.json"])["format"] == "hios-graph"


# -- the real command, in a subprocess ------------------------------------------------------------------

@pytest.mark.parametrize("name,text,argv", [
    ("g.json", GRAPH_JSON.replace('"cost": ', '"cost": 1' + "0" * 400 + ', "x": ', 1), ["--algo", "all"]),
    ("g.txt", "2\na 1e308 1\nb 1e308 1\n0\n", ["--algo", "ios"]),
    ("g.txt", GRAPH_TXT, ["-o", "s.json", "--trace", "t.json", "--gantt", "g.xyz"]),
    ("g.txt", GRAPH_TXT, ["--gpus", "40000"]),
])
def test_subprocess_one_line(tmp_path, name, text, argv):
    (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "hios", "simulate", name, *argv], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("hios simulate: error: "), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
