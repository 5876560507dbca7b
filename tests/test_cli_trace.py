"""``hios run --trace/--feedback-to`` and ``hios profile --from-run`` on CPU logical devices: the
trace holds every segment and the simulation, the run feeds back into a profile, the next plan is
made from it and checked against the run's settings; bad paths and records end with exit 2."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from hios.cli import main  # noqa: E402

FAST = ["--no-baselines", "--warmup", "0", "--repeats", "2", "--inner", "1"]
MODEL = ["--model", "squeezenet1_1", "--image-size", "64"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace")
    plan = d / "plan.json"
    assert main(["optimize", *MODEL, "--cost", "h100", "--gpus", "2", "-o", str(plan)]) == 0
    trace, prof = d / "run.json", d / "fed.json"
    rc = main(["run", str(plan), "--devices", "cpu,cpu", "--trace", str(trace), "--trace-calls", "2",
               "--feedback-to", str(prof), "--json", *FAST])
    return d, plan, trace, prof, rc


def _error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    errors = [line for line in err if line.startswith(("hios: error", "error"))] or err[-1:]
    assert len(errors) == 1 and match in errors[0], err
    return errors[0]


def test_run_trace_and_feedback(traced, capsys):
    d, plan, trace, prof, rc = traced
    assert rc == 0
    data = json.loads(trace.read_text())
    segs = [e for e in data["traceEvents"] if e.get("cat") == "segment"]
    sim = [e for e in data["traceEvents"] if e.get("ph") == "X" and e.get("pid", 0) >= 200]
    rec = data["hiosRun"]
    assert segs and sim and len(rec["segments"]) == len(segs)
    assert all(s["alone_ms"] > 0 and s["measured_ms"] > 0 for s in rec["segments"])
    fed = json.loads(prof.read_text())
    assert fed["meta"]["profile"]["feedback"]["rounds"] == 1
    fit = fed["meta"]["profile"]["replay_fit"]  # the stage model fitted to this run's measured latency
    assert fit["measured_ms"] > 0 and fit["costs"] == "alone" and fit["model"]["type"] == "concurrency"
    assert fed["meta"]["profile"]["memory_format"] == "contiguous" and fed["meta"]["profile"]["kernels"] == "eager"


def test_profile_from_run_then_plan_and_run_from_it(traced, capsys, tmp_path):
    d, plan, trace, prof, rc = traced
    out = tmp_path / "p.json"
    assert main(["profile", "--from-run", str(trace), "-o", str(out)]) == 0
    assert main(["profile", "--from-run", str(trace), *MODEL, "-o", str(tmp_path / "p2.json")]) == 0
    from hios.formats import load_graph
    g = load_graph(out)
    rec = json.loads(trace.read_text())["hiosRun"]
    costs = {o.name: o.cost for o in g.ops}
    for s in rec["segments"]:
        assert sum(costs[n] for n in s["ops"]) == pytest.approx(s["alone_ms"])
    capsys.readouterr()
    rc = main(["run", *MODEL, "--cost", str(out), "--gpus", "2", "--devices", "cpu,cpu", "--json", *FAST])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["check"]["ok"]
    # the profile was measured in fp32: a TF32 run of a plan made from it runs, with one warning that
    # the predictions do not apply, and refuses to feed its times back into that profile
    rc = main(["run", *MODEL, "--cost", str(out), "--gpus", "2", "--devices", "cpu,cpu", "--tf32", "--json", *FAST])
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert rc == 0 and res["check"]["ok"]
    assert [w for w in res["warnings"] if "precision=fp32, this run uses precision=tf32" in w
            and "predicted times do not apply" in w]
    _error(capsys, ["run", *MODEL, "--cost", str(out), "--gpus", "2", "--devices", "cpu,cpu", "--tf32",
                    "--feedback-to", str(tmp_path / "fb.json"), *FAST],
           "precision=fp32, this run uses precision=tf32")
    assert not (tmp_path / "fb.json").exists()


def test_bad_trace_paths_and_records(traced, capsys, tmp_path):
    d, plan, trace, prof, rc = traced
    _error(capsys, ["run", str(plan), "--devices", "cpu,cpu", "--trace", str(tmp_path / "no" / "t.json"), *FAST],
           "does not exist")
    _error(capsys, ["run", str(plan), "--devices", "cpu,cpu", "--trace", str(tmp_path / "t.txt"), *FAST],
           "unknown trace format '.txt'")
    assert list(tmp_path.iterdir()) == []
    _error(capsys, ["profile", "--from-run", str(trace), "--model", "squeezenet1_1", "--image-size", "32",
                    "-o", str(tmp_path / "x.json")], "not 'squeezenet1_1-32'")
    _error(capsys, ["profile", "--from-run", str(plan), "-o", str(tmp_path / "x.json")], "not a hios run record")
    assert list(tmp_path.iterdir()) == []


def test_run_chooses_by_measurement(capsys):
    rc = main(["run", *MODEL, "--cost", "h100", "--gpus", "2", "--devices", "cpu,cpu", "--choose", "2", "--json",
               *FAST])
    out = json.loads(capsys.readouterr().out)
    sel = out["selection"]
    assert rc == 0 and out["check"]["ok"]
    assert len(sel["shortlist"]) == 2 and sel["winner"] in sel["measured_ms"]
    assert sel["measured_ms"][sel["winner"]] == min(sel["measured_ms"].values()) and sel["seconds"] > 0
    _error(capsys, ["run", *MODEL, "--cost", "h100", "--devices", "cpu", "--choose", "-1", *FAST], "--choose")


def test_optimize_chooses_by_measurement(tmp_path, capsys):
    from hios.plan import load_plan
    out = tmp_path / "plan.json"
    rc = main(["optimize", *MODEL, "--cost", "h100", "--gpus", "2", "--device", "cpu", "--choose", "2",
               "-o", str(out)])
    assert rc == 0
    plan = load_plan(out)
    sel = plan.meta["selection"]
    assert plan.meta["chosen_by_measurement"] == sel["winner"]  # on CPU only plans are candidates
    assert sel["measured_ms"][sel["winner"]] == min(sel["measured_ms"].values())
    assert main(["run", str(out), "--devices", ",".join(["cpu"] * plan.machine.gpus), *FAST]) == 0


# -- bad output paths and feedback targets: one line, exit 2, nothing written, before the work ----------

def _no_work(monkeypatch):
    """Fail the test if the plan is compiled (the expensive part of 'hios run')."""
    import hios.pipeline

    def compiled(*a, **k):
        raise AssertionError("the plan was compiled before the bad output was refused")
    monkeypatch.setattr(hios.pipeline, "run_plan", compiled)


def _unwritable_cases(tmp_path):
    (tmp_path / "folder.json").mkdir()
    cases = [("missing/x.json", "does not exist"), ("folder.json", "it is a folder")]
    import os
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        cases.append(("ro/x.json", "is not writable"))
    return cases


@pytest.mark.parametrize("flag,what", [("--trace", "trace"), ("--feedback-to", "fed-back profile")])
def test_unwritable_trace_and_feedback_paths(traced, capsys, tmp_path, monkeypatch, flag, what):
    d, plan, trace, prof, rc = traced
    _no_work(monkeypatch)
    import hios.cli.run as cli_run
    monkeypatch.setattr(cli_run, "make_plan", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("the model was built before the bad output was refused")))
    for path, match in _unwritable_cases(tmp_path):
        line = _error(capsys, ["run", str(plan), "--devices", "cpu,cpu", flag, str(tmp_path / path), *FAST],
                      match)
        assert f"cannot write the {what}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) in (["folder.json"], ["folder.json", "ro"])
    assert not (tmp_path / "missing").exists() and list((tmp_path / "folder.json").iterdir()) == []
    if (tmp_path / "ro").exists():
        assert list((tmp_path / "ro").iterdir()) == []


def _profile_like(prof, tmp_path, **change):
    """A copy of the fed-back profile ``prof`` with ``change`` applied (name, profile settings)."""
    data = json.loads(prof.read_text())
    if "name" in change:
        data["name"] = change.pop("name")
    if "drop_edge" in change:
        change.pop("drop_edge")
        data["edges"] = data["edges"][1:]
    data["meta"]["profile"].update(change)
    out = tmp_path / "old.json"
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("change,match", [
    ({"name": "inception_v3-299"}, "would replace the profile of model 'inception_v3-299' with one of"),
    ({"drop_edge": True}, "would replace a profile of another graph of"),
    ({"memory_format": "channels_last"}, "was measured with memory_format=channels_last, this run uses "
                                         "memory_format=contiguous; --feedback-to would replace it"),
])
def test_feedback_to_a_profile_of_another_model_or_settings_is_refused(traced, capsys, tmp_path, monkeypatch,
                                                                      change, match):
    d, plan, trace, prof, rc = traced
    old = _profile_like(prof, tmp_path, **change)
    text = old.read_text()
    _no_work(monkeypatch)
    _error(capsys, ["run", str(plan), "--devices", "cpu,cpu", "--feedback-to", str(old), "--trace",
                    str(tmp_path / "t.json"), *FAST], match)
    assert old.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_feedback_to_the_same_models_profile_replaces_it(traced, capsys, tmp_path):
    d, plan, trace, prof, rc = traced
    old = _profile_like(prof, tmp_path)
    assert main(["run", str(plan), "--devices", "cpu,cpu", "--feedback-to", str(old), "--trace-calls", "1",
                 *FAST]) == 0
    err = capsys.readouterr().err
    assert f"measured segment times fed back -> {old}" in err
    assert "meas ms: the stream issue on CPU threads, wall clock" in err
    assert "Profiler" not in err and "graph replay attribution" not in err
    assert json.loads(old.read_text())["meta"]["profile"]["feedback"]["source"] == "hios run"
