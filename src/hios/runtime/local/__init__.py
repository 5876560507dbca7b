"""Local execution: one process runs a plan's program on devices and streams.

* :mod:`.executor` — :func:`~.executor.compile`, CUDA-graph and stream modes, Inductor or eager kernels.
* :mod:`.fuse_epilogue`, :mod:`.concat_inplace` — the runtime side of the levers.
* :mod:`.verify` — the built module checked against ``model(x)``, rebuilt without a lever at fault.
"""
