"""CLI of the foundation: ``hios generate`` and ``hios simulate`` outputs, and one-line errors (exit 2)."""

import json
import subprocess
import sys

import pytest

from cli_helpers import run

GOOD_TXT = "4\n0 1.0 0.8\n1 2.0 0.7\n2 1.5 0.9\n3 0.5 1.0\n4\n0 1 1.6\n0 2 1.2\n1 3 0.4\n2 3 0.4\n"


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text(GOOD_TXT)
    return p


def test_simulate_table(good, capsys):
    code, out, err = run(capsys, "simulate", good, "--gpus", 2, "--algo", "sequential")
    assert code == 0 and "Traceback" not in err
    assert "lower bound" in out and "sequential" in out and "latency" in out
    assert "5.0000" in out  # sequential time = total work = 5 ms


def test_simulate_json(good, capsys):
    code, out, err = run(capsys, "simulate", good, "--gpus", 2, "--algo", "sequential", "--json")
    assert code == 0
    d = json.loads(out)  # exactly one JSON object on stdout
    for key in ("graph", "gpus", "lower_bound", "sequential", "results"):
        assert key in d
    assert d["gpus"] == 2 and d["sequential"] == pytest.approx(5.0) and d["graph"] == "g"
    (r,) = d["results"]
    assert r["algorithm"] == "sequential" and r["latency"] == pytest.approx(5.0)
    assert r["optimize_seconds"] >= 0
    assert r["assignment"] == {"0": 0, "1": 0, "2": 0, "3": 0}
    assert d["lower_bound"] <= r["latency"]
    # critical path 0 -> 1 -> 3 = 3.5; work bound under the HIOS model: sum w (0.5 + 0.5 u) / 2
    work = sum(w * (0.5 + 0.5 * u) for w, u in [(1, .8), (2, .7), (1.5, .9), (.5, 1)]) / 2
    assert d["lower_bound"] == pytest.approx(max(3.5, work))


def test_simulate_given_schedule(good, tmp_path, capsys):
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps({"0": 0, "1": 0, "2": 1, "3": 0}))
    code, out, _ = run(capsys, "simulate", good, "--gpus", 2, "--schedule", sp, "--json")
    assert code == 0
    (r,) = json.loads(out)["results"]
    # 0 [0,1]; 2 on GPU1 starts 1+1.2, ends 3.7; 1 [1,3]; 3 waits for 2: 3.7+0.4 -> ends 4.6
    assert r["latency"] == pytest.approx(4.6)
    saved = tmp_path / "out.json"
    code, _, _ = run(capsys, "simulate", good, "--gpus", 2, "--schedule", sp, "-o", saved)
    assert code == 0 and json.loads(saved.read_text())["format"] == "hios-schedule"


def test_trace_and_gantt(good, tmp_path, capsys):
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps({"0": 0, "1": 0, "2": 1, "3": 0}))
    trace, png = tmp_path / "t.json", tmp_path / "g.png"
    code, _, err = run(capsys, "simulate", good, "--gpus", 2, "--schedule", sp, "--trace", trace, "--gantt", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    ev = json.loads(trace.read_text())["traceEvents"]
    ops = [e for e in ev if e["ph"] == "X" and e.get("cat") != "transfer"]
    xfers = [e for e in ev if e.get("cat") == "transfer"]
    assert sorted(e["name"] for e in ops) == ["0", "1", "2", "3"]
    assert {e["pid"] for e in ops} == {0, 1}
    assert len(xfers) == 2 and {e["pid"] for e in xfers}.isdisjoint({0, 1})  # transfers on own tracks
    assert all(isinstance(e["tid"], int) for e in ev if "tid" in e)
    named = {(e["pid"], e.get("tid")): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert named[(0, 0)] == "stream 0" and "GPU 0 -> GPU 1" in named.values()
    start = {e["name"]: e["ts"] for e in ops}
    assert start["2"] == pytest.approx(2200.0)  # microseconds


def test_generate_then_simulate(tmp_path, capsys):
    p = tmp_path / "gen.json"
    code, _, err = run(capsys, "generate", "--nodes", 40, "--edges", 80, "--layers", 4, "--seed", 3, "-o", p)
    assert code == 0 and "wrote" in err
    code, out, _ = run(capsys, "simulate", p, "--algo", "sequential", "--json")
    assert code == 0 and json.loads(out)["results"][0]["latency"] > 0


BAD_TXT = {
    "line3.txt": ("2\n0 1.0 1.0\n1 abc 1.0\n0\n", ":3:"),
    "cycle.txt": ("2\n0 1 1\n1 1 1\n2\n0 1 0\n1 0 0\n", "cycle"),
    "unknown.txt": ("2\n0 1 1\n1 1 1\n1\n0 9 0\n", "unknown operator '9'"),
    "dup.txt": ("2\n0 1 1\n0 1 1\n0\n", "duplicate operator id '0'"),
    "nan.txt": ("1\n0 nan 1\n0\n", "invalid weight 'nan'"),
}
BAD_JSON = {
    "dupname.json": ({"format": "hios-graph", "version": 1, "operators": [{"name": "a"}, {"name": "a"}]},
                     "duplicate operator name 'a'"),
    "nancost.json": ({"format": "hios-graph", "version": 1, "operators": [{"name": "a", "cost": float("nan")}]},
                     "operators[0].cost: expected a finite number, got nan"),
    "unknownedge.json": ({"format": "hios-graph", "version": 1, "operators": [{"name": "a"}],
                          "edges": [{"src": "a", "dst": "ghost"}]}, "unknown operator 'ghost'"),
    "cycle.json": ({"format": "hios-graph", "version": 1, "operators": [{"name": "a"}, {"name": "b"}],
                    "edges": [{"src": "a", "dst": "b"}, {"src": "b", "dst": "a"}]}, "cycle"),
}


def assert_one_line_error(code, out, err, fragment):
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert fragment in err, err


@pytest.mark.parametrize("name", sorted(BAD_TXT))
def test_bad_txt_files(tmp_path, capsys, name):
    text, fragment = BAD_TXT[name]
    p = tmp_path / name
    p.write_text(text)
    assert_one_line_error(*run(capsys, "simulate", p, "--algo", "sequential"), fragment)


@pytest.mark.parametrize("name", sorted(BAD_JSON))
def test_bad_json_files(tmp_path, capsys, name):
    d, fragment = BAD_JSON[name]
    p = tmp_path / name
    p.write_text(json.dumps(d))
    assert_one_line_error(*run(capsys, "simulate", p, "--algo", "sequential"), fragment)


def test_missing_file(tmp_path, capsys):
    assert_one_line_error(*run(capsys, "simulate", tmp_path / "nope.txt"), "cannot read")


@pytest.mark.parametrize("args,fragment", [
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--gpus", "-3"], "--gpus must be at least 1"),
    (["--gpus", "two"], "invalid int value"),
    (["--algo", "magic"], "unknown algorithm 'magic'"),
    (["--algo", "sequential,magic"], "unknown algorithm 'magic'"),
    (["--link", "warp-drive"], "warp-drive"),
    (["--alpha", "1.5"], "--alpha"),
    (["--alpha", "nan"], "--alpha"),
    (["--window", "0", "--algo", "sequential"], "--window"),
])
def test_bad_options(good, capsys, args, fragment):
    assert_one_line_error(*run(capsys, "simulate", good, *args), fragment)


def test_bad_schedule_files(good, tmp_path, capsys):
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps({"0": 0, "1": 0, "2": 5, "3": 0}))
    assert_one_line_error(*run(capsys, "simulate", good, "--gpus", 2, "--schedule", sp), "GPU 5")
    sp.write_text(json.dumps({"0": 0, "1": 0, "2": 1}))
    assert_one_line_error(*run(capsys, "simulate", good, "--gpus", 2, "--schedule", sp), "misses operator '3'")
    sp.write_text(json.dumps({"format": "hios-schedule", "version": 1, "gpus": [[["3"], ["0"], ["1"], ["2"]]]}))
    assert_one_line_error(*run(capsys, "simulate", good, "--schedule", sp), "deadlock")
    assert_one_line_error(*run(capsys, "simulate", good, "--schedule", tmp_path / "no.json"), "cannot read schedule")
    assert_one_line_error(*run(capsys, "simulate", good, "--schedule", sp, "--algo", "sequential"), "not both")


def test_unwritable_outputs(good, tmp_path, capsys):
    nowhere = tmp_path / "no" / "dir"
    for opt, name in [("--trace", "t.json"), ("--gantt", "g.png"), ("-o", "s.json")]:
        assert_one_line_error(*run(capsys, "simulate", good, "--algo", "sequential", opt, nowhere / name),
                              "cannot write")
    assert_one_line_error(*run(capsys, "generate", "-o", nowhere / "g.txt"), "cannot write")


@pytest.mark.parametrize("args,fragment", [
    (["--edges", "10"], "too few"),
    (["--layers", "0"], "--layers"),
    (["--nodes", "2"], "--nodes"),
    (["--comm-ratio", "-1"], "--comm-ratio"),
    (["-o", "g.csv"], "unknown graph format"),
])
def test_generate_errors(tmp_path, capsys, args, fragment):
    if "-o" not in args:
        args = args + ["-o", str(tmp_path / "g.txt")]
    else:
        args = ["-o", str(tmp_path / args[1])]
    assert_one_line_error(*run(capsys, "generate", *args), fragment)


def test_real_process_exit_code_and_no_traceback(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("3\n0 1 1\n")
    proc = subprocess.run([sys.executable, "-m", "hios", "simulate", str(p), "--gpus", "2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"{p}:3: missing line" in proc.stderr
