"""The readers of issue 23, case by case at the CLI and library level: a plan is data (nothing it
names is imported unless the user names it), every nested field of a plan, profile and run record is
checked with a message naming the file and the field path (exit 2, ``HiosError`` from the library),
and no reader follows a FIFO or device file or reads past its size limit.  (The random search for
more such inputs is tests/test_fuzz.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run
from fuzz_strategies import SPECIAL_INPUTS, deadline, make_special
from hios import limits
from hios.errors import HiosError
from hios.fields import Field
from hios.formats import read_cache_entry, read_text
from hios.frontend.zoo import plan_model_spec
from hios.graph import GraphError

TINY = "hios.testing.dist_models:random_dag"
FAST = ["--no-baselines", "--warmup", "0", "--repeats", "1", "--inner", "1"]
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def refused(capsys, d: Path, *argv, match: str, first: bool = True, start: bool = False) -> str:
    """``hios argv`` in folder ``d``: exit 2, no traceback, no new file, the error (last line)
    holding ``match`` (``start``: the error's text begins with it); ``first``: it is the only line
    (refused before any work)."""
    before = files(d)
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err and err.endswith("\n"), err
    if first:
        assert err.count("\n") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith(f"hios {argv[0]}: error: ") and match in last, err
    if start:
        assert last.startswith(f"hios {argv[0]}: error: {match}"), err
    assert files(d) == before, files(d) - before
    return last


def edited(src: Path, dst: Path, edit) -> Path:
    d = json.loads(src.read_text())
    edit(d)
    dst.write_text(json.dumps(d))
    return dst


# -- fixtures: a plan, a profile and a run record of the tiny model, on the CPU ---------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``{"plan", "profile", "run"}``: paths of a 2-GPU plan (analytic H100 costs), a CPU profile and
    the trace of one run of the plan (holding its run record)."""
    pytest.importorskip("torch")
    from hios.cli import main
    d = tmp_path_factory.mktemp("made")
    plan, prof, trace = d / "plan.json", d / "prof.json", d / "run.json"
    assert main(["optimize", "--model", TINY, "--image-size", "16", "--gpus", "2", "--cost", "h100",
                 "-o", str(plan)]) == 0
    assert main(["profile", "--model", TINY, "--image-size", "16", "--device", "cpu", "--no-cache", "--repeats",
                 "1", "--warmup", "0", "--groups", "0", "--no-progress", "-o", str(prof)]) == 0
    assert main(["run", str(plan), "--model", TINY, "--devices", "cpu,cpu", "--trace", str(trace),
                 "--trace-calls", "1", *FAST]) == 0
    return {"plan": plan, "profile": prof, "run": trace}


# -- 1. a plan is data ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["this:x", "builtins:exit", "os:system"])
def test_a_plan_never_imports_the_factory_it_names(made, cwd, capsys, name):
    was_imported = "this" in sys.modules
    p = edited(made["plan"], cwd / "pe.json", lambda d: d["model"].update(name=name))
    last = refused(capsys, cwd, "run", p.name, "--devices", "cpu,cpu", *FAST, match="a plan is data")
    assert f"model.name '{name}' is a factory" in last and "--model" in last and "--trust-plan" in last
    assert ("this" in sys.modules) == was_imported  # `import this` would print the Zen of Python


def test_a_plan_of_an_unknown_model_asks_for_model(made, cwd, capsys):
    p = edited(made["plan"], cwd / "pe.json", lambda d: d["model"].update(name="GoogLeNet"))
    refused(capsys, cwd, "run", p.name, *FAST, match="pe.json: model.name 'GoogLeNet' is not a zoo model")


def test_a_factory_plan_runs_when_the_user_names_the_model_or_trusts_it(made, cwd, capsys):
    for extra in (["--model", TINY], ["--trust-plan"]):
        code, out, err = run(capsys, "run", made["plan"], *extra, "--devices", "cpu,cpu", "--json", *FAST)
        assert code == 0, err
        assert json.loads(out)["check"]["ok"]


def test_trust_plan_without_a_plan_is_refused(cwd, capsys):
    pytest.importorskip("torch")  # hios run asks for torch first
    refused(capsys, cwd, "run", "--model", TINY, "--image-size", "16", "--trust-plan", *FAST,
            match="--trust-plan is for a plan file")


def test_load_takes_the_model_object_and_imports_nothing(made, cwd):
    """hios.load(path, model, x): the caller names the model; the plan's name is never imported."""
    torch = pytest.importorskip("torch")
    import hios
    from hios.frontend.zoo import build
    was_imported = "this" in sys.modules
    p = edited(made["plan"], cwd / "pe.json", lambda d: d["model"].update(name="this:x"))
    model, (x,) = build(TINY, 16)
    fast = hios.load(p, model, x, devices="cpu,cpu")
    assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
    assert ("this" in sys.modules) == was_imported


def test_plan_model_spec():
    assert plan_model_spec("googlenet") == "googlenet"
    assert plan_model_spec(TINY, given=TINY) == TINY
    assert plan_model_spec(TINY, trust=True) == TINY
    assert plan_model_spec("GoogLeNet", given="googlenet") == "googlenet"
    with pytest.raises(HiosError, match="p.json: model.name 'this:x' is a factory"):
        plan_model_spec("this:x", where="p.json")
    with pytest.raises(HiosError, match="the plan was made for googlenet, not squeezenet1_1"):
        plan_model_spec("googlenet", given="squeezenet1_1")


# -- --model package.module:factory that fails in its own code -------------------------------------

FACTORIES = [
    ("def make(:\n", "make", "cannot import 'MOD' (SyntaxError"),
    ("undefined_name\n", "make", "cannot import 'MOD' (NameError: name 'undefined_name' is not defined)"),
    ("raise RuntimeError('boom')\n", "make", "cannot import 'MOD' (RuntimeError: boom)"),
    ("import sys\nsys.exit(0)\n", "make", "cannot import 'MOD' (it called sys.exit(0))"),
    ("def make(**kw):\n    import sys\n    sys.exit(0)\n", "make", "the factory failed: it called sys.exit(0)"),
    ("class C:\n    @property\n    def make(self):\n        raise ValueError('no model')\nc = C()\n", "c.make",
     "reading 'make' failed (ValueError: no model)"),
]


@pytest.mark.parametrize("k", range(len(FACTORIES)))
def test_a_failing_factory_is_one_line(cwd, capsys, k):
    pytest.importorskip("torch")
    source, attr, match = FACTORIES[k]
    mod = f"hios_i23_factory_{k}"
    (cwd / f"{mod}.py").write_text(source)
    try:
        refused(capsys, cwd, "optimize", "--model", f"{mod}:{attr}", "--image-size", "16", "--cost", "h100",
                "-o", "p.json", match=match.replace("MOD", mod), first=False)
    finally:
        sys.modules.pop(mod, None)


def test_the_hios_script_finds_factories_in_the_current_folder(tmp_path):
    pytest.importorskip("torch")
    script = shutil.which("hios") or str(Path(sys.executable).parent / "hios")
    if not Path(script).exists():
        pytest.skip("no hios script installed")
    (tmp_path / "my_i23_model.py").write_text("from hios.testing.dist_models import random_dag as make\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([script, "optimize", "--model", "my_i23_model:make", "--image-size", "16", "--cost", "h100",
                        "-o", "p.json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "p.json").read_text())["model"]["name"] == "my_i23_model:make"


# -- 2. nested fields: plans -------------------------------------------------------------------------

def _set(path: str, value):
    """An edit setting the dotted ``path`` (``graph.meta.profile``) of a JSON object."""
    def edit(d):
        *up, last = path.split(".")
        for k in up:
            d = d.setdefault(k, {})
        d[last] = value
    return edit


PLAN_CASES = [
    ("stage_model", [1], "stage_model: expected an object, got a list of 1"),
    ("stage_model", "abc", "stage_model: expected an object, got 'abc'"),
    ("stage_model", {"alpha": "x"}, "stage_model.type: missing"),
    ("stage_model", {"type": "hios", "alpha": "x"}, "stage_model.alpha: expected a number, got 'x'"),
    ("stage_model", {"type": "measured", "groups": "abc"}, "stage_model.groups: expected a list, got 'abc'"),
    ("stage_model", {"type": "measured", "groups": [{"time": 1.0}]}, "stage_model.groups[0].costs: missing"),
    ("stage_model", {"type": "measured", "groups": [{"costs": [1.0], "time": 1.0}] * 3 + [{"costs": [1.0],
                                                                                          "time": "x"}]},
     "stage_model.groups[3].time: expected a number, got 'x'"),
    ("stage_model", {"type": "concurrency", "beta": 2}, "stage_model.beta: expected a number <= 1, got 2"),
    ("model.dtype", "banana", "model.dtype: expected a torch dtype name (float32, float16, bfloat16, int64...), "
                              "got 'banana'"),
    ("version", -7, "version: unsupported plan version -7"),
    ("version", True, "version: unsupported plan version true"),
    ("predicted", {"hios-lp": "fast"}, "predicted.hios-lp: expected a number, got 'fast'"),
    ("graph.meta.profile", "x", "graph.meta.profile: expected an object, got 'x'"),
    ("graph.meta.inputs", [{"shape": "1x3"}], "graph.meta.inputs[0].shape: expected a list, got '1x3'"),
    ("schedule.gpus", [[["a", 1]]], "schedule.gpus[0][0][1]: expected a string, got 1"),
    ("meta", [], "meta: expected an object, got an empty list"),
]


@pytest.mark.parametrize("path,value,match", PLAN_CASES)
def test_plan_fields_are_checked_by_run(made, cwd, capsys, path, value, match):
    p = edited(made["plan"], cwd / "plan.json", _set(path, value))
    refused(capsys, cwd, "run", p.name, "--model", TINY, "--devices", "cpu,cpu", *FAST, match=f"plan.json: {match}",
            start=True)


@pytest.mark.parametrize("path,value,match", PLAN_CASES)
def test_plan_fields_are_checked_by_load(made, cwd, path, value, match):
    pytest.importorskip("torch")
    import hios
    from hios.frontend.zoo import build
    p = edited(made["plan"], cwd / "plan.json", _set(path, value))
    model, x = build(TINY, 16)
    with pytest.raises(HiosError) as e:
        hios.load(p, model, x, devices="cpu,cpu")
    assert str(e.value).startswith(f"{p}: {match}") and "\n" not in str(e.value), str(e.value)


def test_every_dtype_a_plan_may_name_is_a_torch_dtype():
    torch = pytest.importorskip("torch")
    from hios.formats import DTYPES
    assert all(isinstance(getattr(torch, n, None), torch.dtype) for n in DTYPES)


def test_a_float16_plan_is_refused_before_building(made, cwd, capsys):
    p = edited(made["plan"], cwd / "plan.json", _set("model.dtype", "float16"))
    refused(capsys, cwd, "run", p.name, "--model", TINY, *FAST,
            match="plan.json: plan was made for float16 inputs (model.dtype), the model's input is float32")


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_load_refuses_a_float32_plan_for_another_dtype(made, dtype):
    torch = pytest.importorskip("torch")
    import hios
    from hios.frontend.zoo import build
    model, (x,) = build(TINY, 16)
    t = getattr(torch, dtype)
    with pytest.raises(HiosError, match=f"plan was made for float32 inputs .model.dtype., the model's input is "
                                        f"{dtype}"):
        hios.load(made["plan"], model.to(t), x.to(t), devices="cpu,cpu")


def test_feedback_to_with_a_bad_profile_is_refused_before_the_run(made, cwd, capsys):
    p = edited(made["plan"], cwd / "plan.json", _set("graph.meta.profile", [1]))
    refused(capsys, cwd, "run", p.name, "--model", TINY, "--devices", "cpu,cpu", "--trace", "t.json",
            "--feedback-to", "fb.json", *FAST, match="plan.json: graph.meta.profile: expected an object, got a list",
            start=True)


# -- nested fields: profiles ------------------------------------------------------------------------------

PROFILE_CASES = [
    ("meta.profile", "x", "meta.profile: expected an object, got 'x'"),
    ("meta.profile", [1], "meta.profile: expected an object, got a list of 1"),
    ("meta.profile.groups", "abc", "meta.profile.groups: expected a list, got 'abc'"),
    ("meta.profile.groups", [{"ops": ["a", "b"], "costs": [1.0, 2.0]}], "meta.profile.groups[0].time: missing"),
    ("meta.profile.groups", [{"ops": ["a", "b"], "costs": [1.0], "time": 1.0}],
     "meta.profile.groups[0]: 2 ops but 1 costs"),
    ("meta.profile.groups", [{"ops": [], "costs": [], "time": 1.0}],
     "meta.profile.groups[0].ops: expected a non-empty list, got an empty list"),
    ("meta.profile.concurrency", {"beta": "x"}, "meta.profile.concurrency.beta: expected a number, got 'x'"),
    ("meta.profile.inputs", [{"shape": [1, 3, "x"]}], "meta.profile.inputs[0].shape[2]: expected an integer"),
    ("meta.profile.freezing", "no", "meta.profile.freezing: expected true or false, got 'no'"),
    ("meta.profile.feedback", {"rounds": -1}, "meta.profile.feedback.rounds: expected an integer >= 0, got -1"),
]


@pytest.mark.parametrize("path,value,match", PROFILE_CASES)
def test_profile_fields_are_checked_before_the_capture(made, cwd, capsys, path, value, match):
    p = edited(made["profile"], cwd / "prof.json", _set(path, value))
    refused(capsys, cwd, "optimize", "--model", TINY, "--image-size", "16", "--cost", p.name, "-o", "p.json",
            match=f"prof.json: {match}", start=True)
    refused(capsys, cwd, "simulate", p.name, match=f"prof.json: {match}", start=True)


# -- nested fields: run records -----------------------------------------------------------------------------

def _seg(key, value):
    def edit(d):
        d["hiosRun"]["segments"][0][key] = value
    return edit


RUN_CASES = [
    (_seg("ops", []), "hiosRun.segments[0].ops: expected a non-empty list, got an empty list"),
    (_seg("concurrency", "x"), "hiosRun.segments[0].concurrency: expected a number, got 'x'"),
    (_seg("measured_ms", None), "hiosRun.segments[0].measured_ms: expected a number, got null"),
    (_seg("ops", ["no_such_op"]), "hiosRun.segments[0].ops[0]: run record names operator 'no_such_op'"),
    (lambda d: d["hiosRun"].update(settings="x"), "hiosRun.settings: expected an object, got 'x'"),
    (lambda d: d["hiosRun"]["settings"].update(kernels=3), "hiosRun.settings.kernels: expected a string, got 3"),
    (lambda d: d["hiosRun"].update(version=-7), "hiosRun.version: unsupported run record version -7"),
    (lambda d: d["hiosRun"].update(version=True), "hiosRun.version: unsupported run record version true"),
    (lambda d: d["hiosRun"].update(segments={}), "hiosRun.segments: expected a list, got an object"),
    (lambda d: d["hiosRun"]["graph"]["meta"].update(profile="x"), "hiosRun.graph.meta.profile: expected an object"),
]


@pytest.mark.parametrize("k", range(len(RUN_CASES)))
def test_run_record_fields_are_checked(made, cwd, capsys, k):
    edit, match = RUN_CASES[k]
    p = edited(made["run"], cwd / "run.json", edit)
    refused(capsys, cwd, "profile", "--from-run", p.name, "-o", "out.json", match=f"run.json: {match}", start=True)


def test_a_valid_run_record_still_feeds_back(made, cwd, capsys):
    code, _, err = run(capsys, "profile", "--from-run", made["run"], "-o", "out.json")
    assert code == 0, err
    assert json.loads((cwd / "out.json").read_text())["meta"]["profile"]["feedback"]["rounds"] == 1


# -- no FIFO, no device, nothing too big ---------------------------------------------------------------------

def _commands(made, name):
    """Each reader, through the command that uses it, reading the file ``name``."""
    g = json.dumps({"format": "hios-graph", "version": 1, "operators": [{"name": "a"}, {"name": "b"}],
                    "edges": [{"src": "a", "dst": "b"}]})
    return {
        "graph": ([], ["simulate", name]),
        "schedule": ([("g.json", g)], ["simulate", "g.json", "--schedule", name]),
        "plan": ([], ["run", name, "--model", TINY, *FAST]),
        "run record": ([], ["profile", "--from-run", name, "-o", "out.json"]),
    }


def _special(cwd: Path, kind: str) -> str:
    make_special(cwd / "in.json", kind)
    return "in.json"


WHAT = {"fifo": "it is a FIFO, not a regular file", "dev-zero": "it is a character device, not a regular file",
        "folder": "it is a folder, not a regular file", "oversize": "above the limit of 256 MiB"}
assert set(WHAT) == set(SPECIAL_INPUTS)


@pytest.mark.parametrize("kind", list(WHAT))
@pytest.mark.parametrize("reader", ["graph", "schedule", "plan", "run record"])
def test_no_reader_follows_a_fifo_or_device_or_reads_too_much(made, cwd, capsys, kind, reader):
    name = _special(cwd, kind)
    extra, argv = _commands(made, name)[reader]
    for n, text in extra:
        (cwd / n).write_text(text)
    with deadline(20):
        refused(capsys, cwd, *argv, match=WHAT[kind])


@pytest.mark.parametrize("kind", list(WHAT))
def test_profile_and_cache_entry_readers_refuse_special_files(cwd, capsys, kind):
    name = _special(cwd, kind)
    with deadline(20):
        with pytest.raises(GraphError, match=WHAT[kind]):
            read_cache_entry(cwd / name, "hios-profile-cache", 1)
        with pytest.raises(GraphError, match=WHAT[kind]):
            read_text(cwd / name, "profile")
        if kind != "oversize":  # --cost takes regular files only
            refused(capsys, cwd, "optimize", "--model", TINY, "--image-size", "16", "--cost", name,
                    match="nor an existing file")


def test_the_size_limit_is_in_limits_and_applies_to_text():
    assert limits.MAX_FILE_BYTES == 256 * 2 ** 20 and "file_bytes" in limits.WHY


def test_a_file_growing_past_the_limit_is_refused(tmp_path):
    p = tmp_path / "g.json"
    p.write_text("x" * 100)
    with pytest.raises(GraphError, match="100 bytes, above the limit of"):
        read_text(p, "graph", limit=99)
    assert read_text(p, "graph", limit=100) == "x" * 100


# -- the cache entry reader (wired into the profile cache by hios.cost.profile_cache) -------------

def _entry(tmp_path: Path, **change) -> Path:
    from hios.formats import graph_to_dict
    from hios.graph import Graph, Operator
    d = {"format": "hios-profile-cache", "version": 1, "key": {"model": "m"}, "hash": "abc",
         "graph": graph_to_dict(Graph([Operator("a", 1.0)], [], "m"))}
    d.update(change)
    p = tmp_path / "e.json"
    p.write_text(json.dumps(d) if not isinstance(change.get("text"), str) else change["text"])
    return p


CACHE_CASES = [
    ({"text": "[" * 100_000 + "]" * 100_000}, "invalid JSON: nested too deeply"),
    ({"text": '{"format": ' + "9" * 5000 + "}"}, "invalid JSON: Exceeds the limit"),
    ({"format": "other"}, "not a hios profile cache entry"),
    ({"version": "1"}, "e.json: version: unsupported profile cache entry version '1'"),
    ({"key": [1]}, "e.json: key: expected an object, got a list of 1"),
    ({"hash": 5}, "e.json: hash: expected a non-empty string, got 5"),
    ({"graph": {"format": "hios-graph", "version": 1, "operators": [{"name": "a", "cost": "x"}]}},
     "e.json: graph.operators[0].cost: expected a number, got 'x'"),
]


@pytest.mark.parametrize("change,match", CACHE_CASES)
def test_cache_entry_reader_refuses_with_one_line(tmp_path, change, match):
    p = _entry(tmp_path, **change)
    with pytest.raises(GraphError) as e:
        read_cache_entry(p, "hios-profile-cache", 1)
    assert match in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value), str(e.value)


def test_cache_entry_reader_reads_what_the_cache_writes(tmp_path):
    from hios.cost.profile_cache import CACHE_FORMAT, CACHE_VERSION, write_cache
    from hios.graph import Graph, Operator
    g = Graph([Operator("a", 1.5), Operator("b", 2.0)], [], "m", {"profile": {"device": "cpu", "groups": []}})
    write_cache(tmp_path / "e.json", {"model": "m"}, g)
    key, digest, gd, graph = read_cache_entry(tmp_path / "e.json", CACHE_FORMAT, CACHE_VERSION)
    assert key == {"model": "m"} and len(digest) == 64 and graph.costs == [1.5, 2.0] and gd["name"] == "m"


# -- the toolkit -----------------------------------------------------------------------------------------

def test_a_graph_with_a_non_tensor_input_reads_back():
    """The capture records a non-tensor input with null shape and dtype; that is valid."""
    from hios.formats import graph_from_dict, graph_to_dict
    from hios.graph import Graph, Operator
    g = Graph([Operator("a", 1.0)], [], "m", {"inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"},
                                                       {"name": "flag", "shape": None, "dtype": None}]})
    assert graph_from_dict(json.loads(json.dumps(graph_to_dict(g)))).meta == g.meta


def test_field_messages_name_file_and_path():
    f = Field({"a": [{"b": True}], "n": 10 ** 400}, "x.json")
    with pytest.raises(GraphError, match=r"^x.json: a\[0\].b: expected a number, got true$"):
        f["a"].items()[0]["b"].number()
    with pytest.raises(GraphError, match=r"^x.json: n: a 401-digit integer is above the limit of 1e\+09 "):
        f["n"].number(maximum=1e9, why="w")
    with pytest.raises(GraphError, match=r"^x.json: a\[0\].c: missing$"):
        f["a"].items()[0]["c"]
    assert f.get("zz") is None and f["a"].items()[0]["b"].boolean() is True
