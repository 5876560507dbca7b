"""Plan → program — the stage after the schedulers and the simulator, before any runtime (graph →
capture → cost → schedulers/simulator → **program** → runtime → pipeline → CLI).  Torch-free.

* :mod:`.segmenting` — a schedule cut into per-stream segments, events and transfers
  (:func:`~.segmenting.stream_program`), reused by every executor.
* :mod:`.devices` — logical devices onto physical ones.
* :mod:`.levers` — options that shorten the critical path (fused epilogues, concatenation in place,
  merged segments, stream priorities from :mod:`.priority`).
"""

from .devices import logical_devices, parse_devices
from .levers import Levers
from .priority import critical_operators, stream_priorities
from .segmenting import ExecProgram, ProgramError, SegmentStep, TransferStep, naive_streams, stream_program, verify

__all__ = ["ExecProgram", "Levers", "ProgramError", "SegmentStep", "TransferStep", "critical_operators",
           "logical_devices", "naive_streams", "parse_devices", "stream_priorities", "stream_program", "verify"]
