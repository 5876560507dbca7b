"""Resource limits: the largest inputs hios accepts, each with the reason, checked where input enters.

A request above a limit would exhaust memory or time (or overflow a float) before giving an answer,
so it is refused up front with a one-line :class:`~hios.errors.HiosError` that names the value, the
limit and the reason.  Every limit is far above what the work hios is made for needs (networks of a
few thousand operators, one to a few nodes of GPUs, images of a few thousand pixels).

=================  ==============  ==============================================================
limit              value           why
=================  ==============  ==============================================================
operators          100 000         the schedulers are at least quadratic in the operator count
edges              1 000 000       every scheduler step walks the edges; a file this big is a mistake
GPUs               256             HIOS-LP/MR try every GPU for every operator: 200 operators on 64
                                   GPUs take ~3 s each on a CPU core, 1024 GPUs over 100 s
window             16              the intra-GPU step tries up to 2**(window-1) groups per position
streams            32              a GPU has 32 hardware work queues; more streams share them
image size         8 192 px        activations grow with the square of the side (2048 px is the
                                   main job; 8192 px is 16 times its memory)
batch              1 024           likewise, activations grow with the batch
input bytes        2 GiB           one input tensor; activations are many times larger
cost / time        1e9 ms          ~11.6 days per operator; sums of 1e5 of them stay exact enough
bytes              2**50 (1 PiB)   far above any tensor; keeps byte counts exact as floats
time limit         86 400 s        a day for the optimal solver; ``inf`` would never return
comm ratio         1e6             edge time = weight x ratio must stay below the time limit
input file         256 MiB         every file hios reads (graph, schedule, plan, profile, run
                                   record, profile cache entry) is parsed whole in memory, at many
                                   times its size; the largest graph above is ~100 MiB of JSON
repeats            100 000         timed samples, warm-up calls, calls per sample, traced calls:
                                   more would not finish in useful time
timeout            86 400 s        a day for a distributed rank to wait for a peer
=================  ==============  ==============================================================
"""

from __future__ import annotations

import math
import numbers

from .errors import HiosError, option

__all__ = ["MAX_BATCH", "MAX_BYTES", "MAX_COMM_RATIO", "MAX_COST_MS", "MAX_EDGES", "MAX_FILE_BYTES", "MAX_GPUS",
           "MAX_IMAGE_SIZE", "MAX_INPUT_BYTES", "MAX_OPERATORS", "MAX_REPEATS", "MAX_STREAMS",
           "MAX_TIMEOUT_S", "MAX_TIME_LIMIT_S", "MAX_WINDOW", "WHY", "check_count", "check_gpus",
           "check_graph_size", "check_input", "check_intra", "check_real", "check_schedule_request",
           "check_time_limit", "check_timeout", "check_timing", "number_problem"]

MAX_OPERATORS = 100_000
MAX_EDGES = 1_000_000
MAX_GPUS = 256
MAX_WINDOW = 16
MAX_STREAMS = 32
MAX_IMAGE_SIZE = 8192
MAX_BATCH = 1024
MAX_INPUT_BYTES = 2 ** 31
MAX_COST_MS = 1e9
MAX_BYTES = 2 ** 50
MAX_TIME_LIMIT_S = 86_400.0
MAX_COMM_RATIO = 1e6
MAX_REPEATS = 100_000
MAX_FILE_BYTES = 256 * 2 ** 20
MAX_TIMEOUT_S = 86_400.0

WHY = {
    "operators": "the schedulers are at least quadratic in the operator count",
    "edges": "every scheduler step walks the edges",
    "gpus": "the schedulers try every GPU for every operator, their time grows with the GPU count",
    "window": "the intra-GPU step tries up to 2**(window-1) groups per position",
    "streams": "a GPU has 32 hardware work queues; more streams only share them",
    "image_size": "activations grow with the square of the image side",
    "batch": "activations grow with the batch",
    "input_bytes": "the activations of a network are many times its input",
    "cost": "larger times overflow sums or are a unit mistake",
    "bytes": "larger byte counts are not exact as floats and no tensor is that big",
    "time_limit": "a longer solver run would not return in useful time",
    "comm_ratio": "edge times (weight x ratio) must stay within the cost limit",
    "repeats": "timing would not finish in useful time",
    "file_bytes": "a file is parsed whole in memory, at many times its size",
    "timeout": "a peer that does not answer in a day is dead",
}


def _limit_error(what: str, value, limit, key: str) -> HiosError:
    return HiosError(f"{what} {value!r} is above the limit of {limit:g} ({WHY[key]}; see hios.limits)")


def check_count(what: str, value, key: str, limit: int, minimum: int = 1) -> int:
    """An integer in ``minimum .. limit``; ``what`` names it in the message (e.g. ``option("gpus")``)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise HiosError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise HiosError(f"{what} must be at least {minimum}, got {value}")
    if value > limit:
        raise _limit_error(what, value, limit, key)
    return int(value)


def check_real(what: str, value, key: str, limit: float, positive: bool = False, minimum: float = 0.0) -> float:
    """A finite real number in ``[minimum, limit]`` (``(0, limit]`` when ``positive``)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise HiosError(f"{what} must be a number, got {value!r}")
    if isinstance(value, numbers.Integral) and abs(value) > 2 ** 1000:  # float() would overflow
        raise (_limit_error(what, "a huge integer", limit, key) if value > 0
               else HiosError(f"{what} must be at least {minimum:g}, got a huge negative integer"))
    x = float(value)
    if not math.isfinite(x):
        raise HiosError(f"{what} must be a finite number, got {value!r}")
    if positive and not x > 0:
        raise HiosError(f"{what} must be positive, got {value!r}")
    if x < minimum:
        raise HiosError(f"{what} must be at least {minimum:g}, got {value!r}")
    if x > limit:
        raise _limit_error(what, value, limit, key)
    return x


def check_gpus(n, what: str = option("gpus")) -> int:
    return check_count(what, n, "gpus", MAX_GPUS)


def check_graph_size(operators: int, edges: int, where: str = "graph") -> None:
    if operators > MAX_OPERATORS:
        raise _limit_error(f"{where}: operator count", operators, MAX_OPERATORS, "operators")
    if edges > MAX_EDGES:
        raise _limit_error(f"{where}: edge count", edges, MAX_EDGES, "edges")


def check_intra(window, streams) -> None:
    """``--window`` / ``--streams`` (None: the default)."""
    if window is not None:
        check_count(option("window"), window, "window", MAX_WINDOW)
    if streams is not None:
        check_count(option("streams"), streams, "streams", MAX_STREAMS)


def check_time_limit(seconds) -> None:
    if seconds is not None:
        check_real(option("time_limit"), seconds, "time_limit", MAX_TIME_LIMIT_S, positive=True)


def check_timeout(seconds) -> float:
    """``--timeout`` of a distributed run: positive, finite, at most a day."""
    return check_real(option("timeout"), seconds, "timeout", MAX_TIMEOUT_S, positive=True)


def check_timing(warmup, repeats, inner=1) -> None:
    """``--warmup`` (0 or more), ``--repeats`` and ``--inner`` (1 or more), each at most MAX_REPEATS."""
    check_count(option("warmup"), warmup, "repeats", MAX_REPEATS, minimum=0)
    check_count(option("repeats"), repeats, "repeats", MAX_REPEATS)
    check_count(option("inner"), inner, "repeats", MAX_REPEATS)


def check_input(image_size, batch, channels: int = 3, element_bytes: int = 4) -> None:
    """Image side and batch of a ``batch x channels x S x S`` input, before anything is allocated."""
    check_count("image size", image_size, "image_size", MAX_IMAGE_SIZE)
    check_count("batch", batch, "batch", MAX_BATCH)
    nbytes = batch * channels * image_size * image_size * element_bytes
    if nbytes > MAX_INPUT_BYTES:
        raise HiosError(f"an input of {batch} x {channels} x {image_size} x {image_size} takes "
                        f"{nbytes / 2 ** 30:.1f} GiB, above the limit of {MAX_INPUT_BYTES / 2 ** 30:g} GiB "
                        f"({WHY['input_bytes']}; see hios.limits)")


def number_problem(x, limit: float, unit: str = "") -> str | None:
    """Why ``x`` is not a finite real in ``[0, limit]`` (None when it is), as a phrase to put after
    the value.  Integers of any size are compared exactly, so a 400-digit integer is refused
    instead of overflowing a later float()."""
    t = type(x)
    if t is not float and t is not int:
        if not isinstance(x, numbers.Real) or isinstance(x, bool):
            return "must be a number"
        x = int(x) if isinstance(x, numbers.Integral) else float(x)
    if x != x or x < 0 or x == math.inf:
        return "must be a finite number >= 0"
    if x > limit:
        why = WHY["bytes" if limit == MAX_BYTES else "cost"]
        return f"above the limit of {limit:g}{unit} ({why}; see hios.limits)"
    return None


def check_schedule_request(gpus, window, streams, time_limit, algorithms) -> None:
    """The limits of a scheduling request (the minimums are checked by :class:`hios.options.ScheduleOptions`),
    and no empty name in ``algorithms`` (``--algo ""`` or ``--algo "hios-lp,,"``)."""
    if isinstance(gpus, numbers.Integral) and not isinstance(gpus, bool) and gpus > MAX_GPUS:
        raise _limit_error(option("gpus"), gpus, MAX_GPUS, "gpus")
    check_intra(window, streams)
    if time_limit is not None and isinstance(time_limit, numbers.Real) and time_limit > MAX_TIME_LIMIT_S:
        raise _limit_error(option("time_limit"), time_limit, MAX_TIME_LIMIT_S, "time_limit")
    names = algorithms.split(",") if isinstance(algorithms, str) else list(algorithms)
    if not names or any(not isinstance(a, str) or not a.strip() for a in names):
        raise HiosError(f"{option('algorithm')} {','.join(map(str, names))!r} has an empty algorithm name; "
                        "give e.g. hios-lp or hios-lp,heft or all")
