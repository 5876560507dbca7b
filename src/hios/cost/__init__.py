"""Cost model — the stage after the capture (graph model → capture → **cost** → schedulers and
simulator → program → runtime → pipeline → CLI).

What an operator, a group of concurrent operators and a transfer cost, and where those numbers come
from.  Torch-free: :mod:`.costmodel` (stage models), :mod:`.concurrency` and :mod:`.fitting`
(fitting them to measurements), :mod:`.analytic` (an analytic model of a GPU), :mod:`.feedback` (a
profile from a run's measured segments), :mod:`.profile_cache` and :mod:`.options` (the typed
options of this step).  Needing torch (imported on use): :mod:`.profiler` (+ :mod:`.probe`,
:mod:`.compile_pool`), :mod:`.timing`, and :mod:`.costing`, the cost step of the pipeline that
picks one of these sources.
"""
