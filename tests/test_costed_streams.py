"""The runtime cuts a plan into the same per-stream program as the plan's costed graph does: stream
assignment places each stage's costliest operator first, so the captured graph (whose operators
carry no costs) must not be what decides it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hios.cost.options import CostOptions  # noqa: E402
from hios.frontend import zoo  # noqa: E402
from hios.options import ScheduleOptions  # noqa: E402
from hios.pipeline import plan_model  # noqa: E402
from hios.program.segmenting import stream_program  # noqa: E402
from hios.runtime.local.executor import compile as hios_compile  # noqa: E402


def test_runtime_program_is_the_costed_plans_program():
    model, x = zoo.build("randwire", 64, 1)
    model.eval()
    planned = plan_model(model, x, schedule=ScheduleOptions(gpus=1), cost=CostOptions(source="h100"))
    plan = planned.plan
    module = hios_compile(model, x, plan, "cpu", captured=planned.captured, kernels="eager", mode="stream")
    expected = stream_program(plan.graph, plan.schedule.padded(1), memory=module.devices)
    assert module.program.placement == expected.placement
    assert [s.ops for s in module.program.segments] == [s.ops for s in expected.segments]
    zero = stream_program(planned.captured.graph, plan.schedule.padded(1), memory=module.devices)
    assert zero.placement != expected.placement  # costs decide the streams here: the test can tell
