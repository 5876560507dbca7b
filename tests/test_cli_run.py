"""``hios run`` on CPU logical devices: a plan from ``hios optimize`` runs, is checked against
model(x), and bad requests end with a one-line error and exit code 2."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from hios.cli import main  # noqa: E402

FAST = ["--no-baselines", "--warmup", "0", "--repeats", "2", "--inner", "1"]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    rc = main(["optimize", "--model", "squeezenet1_1", "--image-size", "64", "--cost", "h100", "--gpus", "2",
               "-o", str(path)])
    assert rc == 0 and path.exists()
    return path


def test_run_plan_on_two_cpu_devices(plan_file, capsys):
    rc = main(["run", str(plan_file), "--devices", "cpu,cpu", "--json", *FAST])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["check"]["ok"] and out["max_abs_diff"] <= 1e-4 * out["check"]["output_scale"]
    assert out["devices"] == ["cpu", "cpu"] and out["mode"] == "stream" and out["kernels"] == "eager"
    assert out["plan_call"]["median_ms"] > 0 and out["predicted_ms"] > 0


def test_run_prints_a_table(plan_file, capsys):
    rc = main(["run", str(plan_file), "--devices", "cpu,cpu", *FAST])
    text = capsys.readouterr().out
    assert rc == 0 and "check: max |out - model(x)|" in text and "OK" in text and "simulator prediction" in text


def test_run_model_form(capsys):
    rc = main(["run", "--model", "squeezenet1_1", "--image-size", "64", "--cost", "h100", "--devices", "cpu",
               "--json", *FAST])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["check"]["ok"] and out["model"] == "squeezenet1_1"


def test_run_cost_flag_and_its_old_spelling(capsys):
    """``hios run`` spells it ``--cost`` like ``hios optimize``; ``--costs`` still works, unlisted."""
    from hios.cli import build_parser
    helptext = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "--cost " in helptext and "--costs" not in helptext
    rc = main(["run", "--model", "squeezenet1_1", "--image-size", "32", "--costs", "h100", "--devices", "cpu",
               "--json", *FAST])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["check"]["ok"]


def _edit(plan_file, tmp_path, fn):
    d = json.loads(plan_file.read_text())
    fn(d)
    p = tmp_path / "edited.json"
    p.write_text(json.dumps(d))
    return str(p)


def _error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert err and err[-1].startswith("hios run: error:") and match in err[-1], err


def test_bad_requests_exit_2(plan_file, tmp_path, capsys):
    _error(capsys, ["run", str(plan_file), "--devices", "cpu,cpu,cpu", *FAST], "has only 2 GPU")
    _error(capsys, ["run", str(plan_file), "--devices", "cuda:0,cuda:9", *FAST], "does not exist")
    _error(capsys, ["run", str(plan_file), "--devices", "tpu:0", *FAST], "unsupported device")
    _error(capsys, ["run", *FAST], "give a plan file or --model")
    _error(capsys, ["run", str(plan_file), "--model", "googlenet", *FAST],
           "plan was made for squeezenet1_1, not googlenet")
    _error(capsys, ["run", str(tmp_path / "missing.json"), *FAST], "cannot read plan")
    other = _edit(plan_file, tmp_path, lambda d: d["model"].update(name="googlenet"))
    _error(capsys, ["run", other, "--devices", "cpu,cpu", *FAST], "plan does not match the model")
    bigger = _edit(plan_file, tmp_path, lambda d: d["model"].update(image_size=96))
    _error(capsys, ["run", bigger, "--devices", "cpu,cpu", *FAST], "input shape")


def test_plan_missing_an_operator_is_rejected(plan_file, tmp_path, capsys):
    def drop(d):
        gpus = d["schedule"]["gpus"]
        for sts in gpus:
            for st in sts:
                if st:
                    st.pop()
                    return
    _error(capsys, ["run", _edit(plan_file, tmp_path, drop), "--devices", "cpu,cpu", *FAST], "operator")


def test_options_that_a_plan_file_cannot_honour_are_refused(plan_file, capsys):
    """Every option reaches what it names or is refused: planning options with a plan file."""
    for flag, value in (("--gpus", "4"), ("--algo", "heft"), ("--window", "2"), ("--streams", "2"),
                        ("--cost", "h100"), ("--image-size", "128")):
        _error(capsys, ["run", str(plan_file), flag, value, "--devices", "cpu,cpu", *FAST], f"{flag} shapes a plan")


def test_optimize_refuses_profiling_options_without_profiling(capsys):
    for extra in (["--device", "cpu"], ["--kernels", "eager"]):
        rc = main(["optimize", "--model", "squeezenet1_1", "--image-size", "64", "--cost", "h100", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and "measures nothing" in err[-1] and extra[0] in err[-1]


def test_run_cudnn_benchmark_lever_is_recorded_and_the_flag_restored(capsys):
    import torch
    before = torch.backends.cudnn.benchmark
    rc = main(["run", "--model", "squeezenet1_1", "--image-size", "32", "--cost", "h100", "--devices", "cpu",
               "--cudnn-benchmark", "--json", *FAST])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["check"]["ok"] and "cudnn_benchmark" in out["levers"]
    assert torch.backends.cudnn.benchmark == before
