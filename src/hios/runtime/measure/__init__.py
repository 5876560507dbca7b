"""Measurement: how fast a built plan runs, against what, and what really ran.

* :mod:`.bench` — timing a plan and its PyTorch baselines; :mod:`.plan` — the run record of one
  local run (:func:`~.plan.measure_plan`); :mod:`.record` — that record as a table.
* :mod:`.choose` — candidate plans timed on the device, the fastest measured kept.
* :mod:`.trace` — what ran, per segment and stream; :mod:`.segment_profile` — measured segment times.
"""
