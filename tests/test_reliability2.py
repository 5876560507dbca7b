"""Issue 23, deliverables 3-6, at the CLI and library level: the profile cache never costs a result,
interrupts and failures leave nothing behind, every limit is enforced where its option enters, a
command never overwrites its own input, and the library refuses bad arguments and impure models.
(CPU only; the fixtures are plans and profiles of the tiny random DAG at 16 px.)"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import TINY, cwd, files, run  # noqa: F401 - cwd is a fixture
from hios import limits
from hios.errors import HiosError
from hios.outputs import OutputSet, check_output, clean_stale

SRC = str(Path(__file__).parents[1] / "src")


def temps(d: Path) -> list[str]:
    return [f for f in files(d) if ".tmp" in f]


def refused(capsys, d, *argv, match=""):
    """Run argv in folder d: exit 2, no traceback, one error line (the last; progress lines may come
    before it) containing ``match``, no new file.  Returns the error line."""
    before = files(d)
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert "Traceback" not in err and [ln for ln in lines if ": error: " in ln] == lines[-1:], err
    assert match in lines[-1], err
    assert files(d) == before, files(d) - before
    return lines[-1]


@pytest.fixture(scope="module")
def plan2(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("plan")
    from hios.cli import main
    assert main(["optimize", "--model", TINY, "--image-size", "16", "--gpus", "2", "--cost", "h100",
                 "-o", str(d / "p2.json"), "--json"]) == 0
    return d / "p2.json"


# -- 3. the profile cache never costs a result ---------------------------------------------------

PROFILE = ["profile", "--model", TINY, "--image-size", 16, "--device", "cpu", "--no-progress"]


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in (cache / "hios" / "profiles").iterdir() if p.name.endswith(".json")]
    return entry


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A cache folder holding the entry of the tiny model's CPU profile (made by one real profile)."""
    pytest.importorskip("torch")
    from hios.cli import main
    d = tmp_path_factory.mktemp("cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(d)
    try:
        assert main([str(a) for a in PROFILE] + ["-o", str(d / "first.json")]) == 0
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
    return d, _entry(d).read_text()


def _spoil(entry: Path, how: str) -> None:
    if entry.is_dir():
        shutil.rmtree(entry)
    else:
        entry.unlink()
    if how == "deep":
        entry.write_text("[" * 100_000 + "]" * 100_000)
    elif how == "digits":
        entry.write_text("1" * 5000)
    elif how == "folder":
        entry.mkdir()
    elif how == "fifo":
        os.mkfifo(entry)
    elif how == "binary":
        entry.write_bytes(b"\xff\xfe\x00garbage")


@pytest.mark.parametrize("how", ["deep", "digits", "folder", "fifo", "binary"])
def test_bad_cache_entry_is_ignored_and_remeasured(cwd, capsys, monkeypatch, cached, how):
    cache, good = cached
    entry = _entry(cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    try:
        _spoil(entry, how)
        code, _, err = run(capsys, *PROFILE, "-o", "P.JSON")  # upper-case suffix accepted (as elsewhere)
        assert code == 0, err
        assert "Traceback" not in err
        warned = [ln for ln in err.splitlines() if ln.startswith("warning:")]
        assert len(warned) == (2 if how == "folder" else 1), err  # a folder also blocks the new entry
        assert "ignoring profile cache entry" in warned[0] and "re-measuring" in warned[0]
        assert "measured in" in err and (cwd / "P.JSON").exists()
        assert not temps(cache) and not temps(cwd)
    finally:
        _spoil(entry, "none")
        entry.write_text(good)


def test_default_cache_folder_unusable_warns_and_writes_the_profile(cwd, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cwd / "g.txt"))  # a file
    code, _, err = run(capsys, *PROFILE, "-o", "p.json")
    assert code == 0, err
    warned = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "is a file" in warned[0] and "without the cache" in warned[0], err
    assert err.index("warning:") < err.index("building")  # checked up front, before any work
    assert files(cwd) == {"g.txt", "p.json"}


@pytest.mark.parametrize("where", ["write", "rename"])
def test_full_disk_under_the_cache_warns_and_writes_the_profile(cwd, capsys, monkeypatch, where):
    """The cache's file system is full (ENOSPC on writing its temporary file, or on the rename):
    one warning, no partial temporary file, and -o (elsewhere) is still written."""
    pytest.importorskip("torch")
    import errno

    import hios.outputs as outputs
    cache = cwd / "cache"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "write":
        real = Path.write_text

        def write_text(self, *a, **k):
            if str(self).startswith(str(cache)):
                real(self, "{\"half\": ")
                raise full
            return real(self, *a, **k)
        monkeypatch.setattr(Path, "write_text", write_text)
    else:
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if str(dst).startswith(str(cache)):
                raise full
            return real_replace(src, dst, *a, **k)
        monkeypatch.setattr(outputs.os, "replace", replace)
    code, _, err = run(capsys, *PROFILE, "--cache-dir", cache, "-o", "p.json")
    assert code == 0, err
    warned = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "No space left on device" in warned[0] and "not cached" in warned[0], err
    assert (cwd / "p.json").exists()
    assert not temps(cwd) and not [p for p in cache.rglob("*") if p.is_file()]


# -- 4. interrupts and failures leave nothing ------------------------------------------------------

def _interrupt(cwd: Path, sig: int, argv: list[str], after: str) -> tuple[int, str]:
    """Start ``python -m hios argv`` in ``cwd`` with default signal handling, wait for ``after`` on
    stderr, send ``sig``; (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    log = cwd.parent / f"{cwd.name}.stderr"
    with open(log, "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "hios", *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                             stderr=err, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        t0 = time.time()
        while after not in log.read_text(errors="replace") and p.poll() is None and time.time() - t0 < 300:
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the timing loop
        p.send_signal(sig)
        code = p.wait(timeout=300)
    return code, log.read_text(errors="replace")


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_cpu_timing_ends_cleanly(cwd, plan2, sig, code, word):
    """Ctrl-C (or SIGTERM) while two CPU streams run: one line, 130 (143), no abort from a stream
    thread left inside torch, and no --trace file of the interrupted run."""
    pytest.importorskip("torch")
    shutil.copy(plan2, cwd / "p.json")
    before = files(cwd)
    got, err = _interrupt(cwd, sig, ["run", "p.json", "--trust-plan", "--devices", "cpu,cpu", "--trace", "run.json",
                                     "--no-baselines", "--repeats", "90000"], "timing the plan")
    assert got == code, err[-2000:]
    assert "terminate called" not in err and "Traceback" not in err, err[-2000:]
    assert err.rstrip().splitlines()[-1] == f"hios run: {word}"
    assert files(cwd) == before


def test_interrupt_after_staging_leaves_no_output(cwd, capsys, monkeypatch):
    """Ctrl-C after -o was staged (while the trace is written): neither file, no temporary file."""
    pytest.importorskip("torch")
    import hios.cli.simulate as sim

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim, "write_trace", interrupted)
    code, _, err = run(capsys, "optimize", "--model", TINY, "--image-size", 16, "--cost", "h100", "-o", "p.json",
                       "--save-graph", "g.json", "--trace", "t.json")
    assert code == 130 and err.splitlines()[-1] == "hios optimize: interrupted"
    assert files(cwd) == {"g.txt"}


def test_stale_temp_files_of_killed_runs_are_cleaned(cwd, capsys):
    dead = cwd / ".s.json.999999999-abcdefgh.tmp.json"   # no such PID
    live = cwd / f".s.json.{os.getppid()}-abcdefgh.tmp.json"  # a running process: left alone
    old = cwd / ".s.json.k2j4h5g6.tmp.json"               # an older hios's name, two hours old
    other = cwd / ".t.json.999999999-abcdefgh.tmp.json"    # another output's: left alone
    for p in (dead, live, old, other):
        p.write_text("{")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    code, _, err = run(capsys, "simulate", "g.txt", "-o", "s.json")
    assert code == 0, err
    assert files(cwd) == {"g.txt", "s.json", live.name, other.name}
    assert clean_stale(cwd / "s.json") == []


def test_run_writes_trace_and_feedback_only_after_a_passing_check(cwd, capsys):
    pytest.importorskip("torch")
    code, out, err = run(capsys, "run", "--model", "hios.testing.fault_models:noisy", "--image-size", 16,
                         "--cost", "h100", "--devices", "cpu", "--no-baselines", "--warmup", 0, "--repeats", 1,
                         "--trace", "t.json", "--feedback-to", "f.json", "--trace-calls", 1, "--json")
    assert code == 1, err
    assert json.loads(out)["check"]["ok"] is False
    assert "draws random numbers" in err  # the reference call saw it coming
    assert files(cwd) == {"g.txt"}


def test_run_writes_trace_and_feedback_after_a_passing_check(cwd, capsys, plan2):
    pytest.importorskip("torch")
    code, _, err = run(capsys, "run", plan2, "--trust-plan", "--devices", "cpu,cpu", "--no-baselines", "--warmup", 0,
                       "--repeats", 3, "--trace", "t.json", "--feedback-to", "f.json", "--trace-calls", 1)
    assert code == 0, err
    assert files(cwd) == {"g.txt", "t.json", "f.json"}
    assert "hiosRun" in json.loads((cwd / "t.json").read_text())


# -- 5. limits where options enter; outputs -----------------------------------------------------------

@pytest.mark.parametrize("argv,match", [
    (["--repeats", "1000000000000"], "--repeats 1000000000000 is above the limit of 100000"),
    (["--warmup", "1000000000000"], "--warmup 1000000000000 is above the limit"),
    (["--inner", "1000000000000"], "--inner 1000000000000 is above the limit"),
    (["--trace", "t.json", "--trace-calls", "1000000000000"], "--trace-calls 1000000000000 is above the limit"),
    (["--trace", "t.json", "--trace-calls", "1e12"], "invalid int value: '1e12'"),
    (["--trace-calls", "0"], "--trace-calls must be at least 1"),
    (["--choose", "-1"], "--choose must be >= 0"),
    (["--timeout", "-1"], "--timeout must be positive"),
    (["--timeout", "nan"], "--timeout must be a finite number"),
    (["--timeout", "inf"], "--timeout must be a finite number"),
    (["--timeout", "1e9"], "--timeout 1000000000.0 is above the limit"),
    (["--timeout", "30"], "it needs --backend distributed"),
])
def test_run_option_limits(cwd, capsys, plan2, argv, match):
    refused(capsys, cwd, "run", plan2, "--trust-plan", "--devices", "cpu,cpu", *argv, match=match)


@pytest.mark.parametrize("argv,match", [
    (["--repeats", "1000000000000"], "--repeats 1000000000000 is above the limit"),
    (["--repeats", "1e12"], "invalid int value: '1e12'"),
    (["--warmup", "1000000000000"], "--warmup 1000000000000 is above the limit"),
    (["--repeats", "0"], "--repeats must be at least 1"),
])
def test_profile_option_limits(cwd, capsys, argv, match):
    refused(capsys, cwd, *PROFILE, "-o", "p.json", *argv, match=match)


def test_options_cpu_timing_overrides_are_warned_about(cwd, capsys, plan2):
    pytest.importorskip("torch")
    code, _, err = run(capsys, "run", plan2, "--trust-plan", "--devices", "cpu,cpu", "--no-baselines", "--warmup", 4,
                       "--inner", 3, "--repeats", 3)
    assert code == 0, err
    assert "warning: --inner 3 is not used on CPU" in err and "warning: --warmup 4: CPU timing makes at most 2" in err
    code, _, err = run(capsys, *PROFILE, "--no-cache", "--warmup", 5, "-o", "p.json")
    assert code == 0 and "warning: --warmup 5 is not used on CPU" in err, err


def test_output_name_length_after_the_temporary_suffix(cwd, capsys):
    long = "x" * 240 + ".json"  # fits; its temporary name is cut to fit too
    code, _, err = run(capsys, "simulate", "g.txt", "-o", long)
    assert code == 0, err
    assert (cwd / long).exists() and not temps(cwd)
    refused(capsys, cwd, "simulate", "g.txt", "-o", "y" * 300 + ".json", match="above this file system's limit")


def test_same_file_through_a_symlinked_folder(cwd, capsys):
    (cwd / "real").mkdir()
    (cwd / "alias").symlink_to("real")
    refused(capsys, cwd, "simulate", "g.txt", "-o", "real/x.json", "--trace", "alias/x.json",
            match="named both as the schedule and the trace")


@pytest.mark.parametrize("case", ["simulate", "simulate-link", "optimize", "run", "profile"])
def test_a_command_never_overwrites_its_input(cwd, capsys, plan2, case):
    shutil.copy(plan2, cwd / "p.json")
    (cwd / "g.json").write_text(json.dumps({"format": "hios-graph", "version": 1,
                                            "operators": [{"name": "a", "cost": 1.0}], "edges": []}))
    (cwd / "link.json").symlink_to("g.json")
    argv = {"simulate": ["simulate", "g.json", "-o", "g.json"],
            "simulate-link": ["simulate", "link.json", "--trace", "g.json"],
            "optimize": ["optimize", "--model", TINY, "--image-size", 16, "--cost", "g.json", "-o", "g.json"],
            "run": ["run", "p.json", "--feedback-to", "p.json"],
            "profile": ["profile", "--from-run", "p.json", "-o", "p.json"]}[case]
    before = {p: (cwd / p).read_bytes() for p in ("g.json", "p.json")}
    refused(capsys, cwd, *argv, match="that the command reads; write it to another file")
    assert {p: (cwd / p).read_bytes() for p in before} == before


def test_write_error_names_the_users_path(cwd):
    """A write that fails after the checks (file size limit) names -o, not the hidden temporary file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))

    r = subprocess.run([sys.executable, "-m", "hios", "simulate", "g.txt", "-o", "s.json"], cwd=cwd, env=env,
                       capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1] == "hios simulate: error: s.json: cannot write the schedule: File too large"
    assert files(cwd) == {"g.txt"}


def test_output_set_refuses_an_input_in_either_order(tmp_path):
    out = OutputSet()
    out.add(tmp_path / "a.json", (".json",), "plan")
    with pytest.raises(HiosError, match="the plan would overwrite the profile"):
        out.add_input(tmp_path / "." / "a.json", "profile")
    assert check_output(tmp_path / ("z" * 200 + ".json"), (".json",), "plan") is not None


def test_gantt_operator_names_are_not_mathtext(cwd, capsys):
    pytest.importorskip("matplotlib")
    (cwd / "m.txt").write_text("2\n$\\frac{$ 5 1\n$x^ 1 1\n1\n$\\frac{$ $x^ 1\n")
    code, _, err = run(capsys, "simulate", "m.txt", "--gantt", "m.png", "--gpus", 2)
    assert code == 0, err
    assert (cwd / "m.png").stat().st_size > 0


# -- out of memory ------------------------------------------------------------------------------------

def test_only_a_missing_module_is_needs_torch(monkeypatch):
    import importlib

    from hios.optional import require
    real = importlib.import_module

    def fake(exc):
        def imp(name, *a, **k):
            if name == "torchvision":
                raise exc
            return real(name, *a, **k)
        return imp

    monkeypatch.setattr(importlib, "import_module", fake(ModuleNotFoundError("no", name="torchvision")))
    with pytest.raises(HiosError, match=r"needs torchvision: pip install 'hios\[vision\]'"):
        require("torchvision", "model googlenet")
    monkeypatch.setattr(importlib, "import_module",
                        fake(ImportError("libtorch_cpu.so: failed to map segment from shared object")))
    with pytest.raises(MemoryError, match="loading torchvision ran out of memory"):
        require("torchvision", "model googlenet")
    monkeypatch.setattr(importlib, "import_module", fake(ImportError("undefined symbol: _ZN3c10")))
    with pytest.raises(HiosError, match="torchvision is installed but cannot be imported"):
        require("torchvision", "model googlenet")


def test_out_of_memory_loading_torch_is_out_of_memory(cwd, capsys, monkeypatch):
    import importlib
    real = importlib.import_module

    def imp(name, *a, **k):
        if name == "torch":
            raise ImportError("libtorch_cpu.so: cannot allocate memory")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", imp)
    err = refused(capsys, cwd, "optimize", "--model", TINY, "--image-size", 16, "--cost", "h100", "-o", "p.json",
                  match="hios optimize: error: out of memory: ")
    assert "needs torch" not in err


def _module(cwd: Path, name: str, text: str) -> str:
    (cwd / f"{name}.py").write_text(text)
    sys.modules.pop(name, None)
    return name


MODULES = {
    "syntax": ("def f(:\n", "SyntaxError"),
    "name": ("x = undefined_name\n", "NameError: name 'undefined_name' is not defined"),
    "runtime": ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    "exit_module": ("import sys\nsys.exit(0)\n", "it called sys.exit(0)"),
    "exit_factory": ("import sys\ndef f(image_size=16, batch=1):\n    sys.exit(0)\n",
                     "the factory failed: it called sys.exit(0)"),
    "property": ("import sys, types\nclass M(types.ModuleType):\n    @property\n    def f(self):\n"
                 "        raise ValueError('property boom')\nsys.modules[__name__].__class__ = M\n",
                 "reading 'f' failed (ValueError: property boom)"),
}


@pytest.mark.parametrize("case", sorted(MODULES))
def test_factory_module_problems_are_one_line(cwd, capsys, case):
    pytest.importorskip("torch")
    text, match = MODULES[case]
    name = _module(cwd, f"fac_{case}_{os.getpid()}", text)
    try:
        refused(capsys, cwd, "optimize", "--model", f"{name}:f", "--image-size", 16, "--cost", "h100",
                "-o", "p.json", match=match)
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("where", ["factory", "capture"])
def test_memory_error_in_factory_or_capture_is_out_of_memory(cwd, capsys, where):
    pytest.importorskip("torch")
    text = ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        raise MemoryError()\n"
            "def f(image_size=16, batch=1):\n" + ("    raise MemoryError()\n" if where == "factory" else
                                                   "    return M()\n"))
    name = _module(cwd, f"oom_{where}_{os.getpid()}", text)
    try:
        err = refused(capsys, cwd, "optimize", "--model", f"{name}:f", "--image-size", 16, "--cost", "h100",
                      "-o", "p.json", match="hios optimize: error: out of memory: ")
        assert f"model {name}:f at 16 px, batch 1 on cpu" in err and "does not run" not in err
    finally:
        sys.modules.pop(name, None)


def test_simulate_out_of_memory_names_the_graph(cwd, capsys, monkeypatch):
    import hios.cli.simulate as sim

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(sim, "compare", boom)
    err = refused(capsys, cwd, "simulate", "g.txt", "-o", "s.json", match="out of memory: graph g.txt (MemoryError)")
    assert "?" not in err and "default size" not in err


def test_hios_command_finds_factories_in_the_current_folder(cwd):
    hios = shutil.which("hios") or str(Path(sys.executable).parent / "hios")
    if not Path(hios).exists():
        pytest.skip("the hios console script is not installed")
    (cwd / "myfactory.py").write_text("from hios.testing.dist_models import random_dag\n"
                                      "def f(image_size=16, batch=1):\n    return random_dag(image_size=image_size)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([hios, "optimize", "--model", "myfactory:f", "--image-size", "16", "--cost", "h100",
                        "-o", "p.json"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (cwd / "p.json").exists()


# -- 6. library arguments and models ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    torch = pytest.importorskip("torch")
    from hios.testing.dist_models import random_dag
    return random_dag(image_size=16), torch.randn(1, 3, 16, 16)


@pytest.mark.parametrize("kw,match", [
    ({"gpus": "2"}, "hios.optimize: gpus must be an integer, got '2'"),
    ({"gpus": True}, "gpus must be an integer"),
    ({"gpus": 10 ** 6}, f"above the limit of {limits.MAX_GPUS}"),
    ({"algorithm": 3}, "algorithm must be a name"),
    ({"algorithm": []}, "algorithm must be a name"),
    ({"choose": "2"}, "choose must be an integer >= 0, got '2'"),
    ({"choose": -1}, "choose must be >= 0"),
    ({"choose": 1.5}, "choose must be an integer"),
    ({"devices": 0}, "devices must be a string"),
    ({"cost": 5}, "cost must be 'profile'"),
    ({"window": "3"}, "window must be an integer"),
    ({"tf32": "yes"}, "tf32 must be True or False"),
])
def test_optimize_arguments_refused_up_front(tiny, monkeypatch, kw, match):
    import hios
    import hios.pipeline as pipeline

    def never(*a, **k):
        raise AssertionError("planned before the arguments were checked")

    monkeypatch.setattr(pipeline, "plan_model", never)
    model, x = tiny
    with pytest.raises(HiosError, match=re.escape(match)):
        hios.optimize(model, x, **{"cost": "h100", "devices": "cpu", **kw})


def test_load_arguments_refused_up_front(tiny, tmp_path):
    import hios
    model, x = tiny
    with pytest.raises(HiosError, match="hios.load: devices must be"):
        hios.load(tmp_path / "missing.json", model, x, devices=3)
    with pytest.raises(HiosError, match="hios.load: model must be a torch.nn.Module"):
        hios.load(tmp_path / "missing.json", "googlenet", x)


def _models():
    import torch
    from torch import nn

    class ListIn(nn.Module):
        def forward(self, xs):
            return xs[0] + xs[1]

    class DictIn(nn.Module):
        def forward(self, d):
            return d["a"] * 2

    class MutatesInput(nn.Module):
        def forward(self, x):
            x.add_(1)
            return x * 2

    class MutatesBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(1))

        def forward(self, x):
            self.calls += 1
            return x * 2

    return ListIn, DictIn, MutatesInput, MutatesBuffer


@pytest.mark.parametrize("case,match", [
    ("list", "example input 0 is a list"),
    ("dict-in-tuple", "example input 0 is a dict"),
    ("dict", "example_inputs is a dict"),
    ("input", r"changes its input\(s\) \[0\] in place"),
    ("buffer", r"changes buffer\(s\) calls in place"),
])
def test_unplannable_models_refused_before_planning(tiny, case, match):
    import torch

    import hios
    ListIn, DictIn, MutatesInput, MutatesBuffer = _models()
    _, x = tiny
    x0 = x.clone()
    model, inputs = {"list": (ListIn(), ([x, x],)), "dict-in-tuple": (DictIn(), ({"a": x},)),
                     "dict": (DictIn(), {"a": x}), "input": (MutatesInput(), x),
                     "buffer": (MutatesBuffer(), x)}[case]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(HiosError, match=match):
        hios.optimize(model, inputs, cost="h100", devices="cpu")
    assert torch.equal(x, x0)  # the reference call left the input and the buffers as they were
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_random_draws_in_forward_are_warned_about(tiny):
    import torch
    from torch import nn

    import hios

    class Noise(nn.Module):
        def forward(self, x):
            return x + torch.randn(x.shape)

    from hios.frontend.model_checks import check_pure
    _, x = tiny
    with pytest.warns(UserWarning, match="hios.plan_model: the model's forward draws random numbers"):
        hios.plan_model(Noise(), x, cost=hios.CostOptions(source="h100"))
    state = torch.get_rng_state()
    with pytest.warns(UserWarning, match="draws random numbers"):
        check_pure("test", Noise(), (x,))
    assert torch.equal(torch.get_rng_state(), state)  # the reference call's draws are undone


def test_pure_model_plans_without_warning(tiny, recwarn):
    import torch

    import hios
    model, x = tiny
    fast = hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100")
    assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
    assert not [w for w in recwarn if "random" in str(w.message) or "changes" in str(w.message)]
