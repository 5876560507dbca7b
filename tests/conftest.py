"""Test options: ``--slow`` runs the fuzzing suite (tests/test_fuzz.py) with 10 times the examples
(``HYPOTHESIS_PROFILE=slow`` does the same); ``HIOS_FUZZ_REPORT=FILE`` writes its outcome counts per
target as JSON (the reliability table of docs/results.md)."""

import json
import os

import fuzz_strategies


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="fuzzing suite: 10x the examples (also HYPOTHESIS_PROFILE=slow)")


def pytest_configure(config):
    if config.getoption("--slow") or os.environ.get("HYPOTHESIS_PROFILE") == "slow":
        fuzz_strategies.SCALE = 10


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("HIOS_FUZZ_REPORT")
    if path and fuzz_strategies.OUTCOMES:
        with open(path, "w") as f:
            json.dump({"scale": fuzz_strategies.SCALE,
                       "targets": {t: dict(c) for t, c in sorted(fuzz_strategies.OUTCOMES.items())}}, f, indent=1)
