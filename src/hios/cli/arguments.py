"""Argument groups shared by the sub-commands, their translation into the library's typed
options (:mod:`hios.options`), and back: the library names options by their fields
(:func:`hios.errors.option`), the CLI by its flags (:func:`flag`, :func:`cli_text`).  Nothing below
the CLI sees an argparse ``Namespace`` or knows a flag."""

from __future__ import annotations

from ..errors import raw_message, render
from ..machine import DEFAULT_LINK, LINK_PRESETS
from ..cost.costmodel import DEFAULT_ALPHA
from ..options import ANALYTIC_GPUS, KERNELS, MODES, CostOptions, RunOptions, ScheduleOptions, TimingOptions
from ..program.levers import PRIORITIES, Levers
from ..program.segmenting import SYNC_MODES
from ..schedulers import ALGORITHMS

#: Option fields whose flag is not ``--`` and the field with dashes.
FLAGS = {"algorithm": "--algo", "algorithms": "--algo", "source": "--cost", "output": "-o"}


def flag(field: str) -> str:
    """The flag of an option field: ``time_limit`` -> ``--time-limit``, ``algorithm`` -> ``--algo``."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def cli_text(message) -> str:
    """A library message (an exception, a warning or a string) with the options it names as flags."""
    return render(raw_message(message) if isinstance(message, BaseException) else str(message), flag)


MODEL_HELP = "inception_v3, googlenet, squeezenet1_1, nasnetalarge, randwire or package.module:factory"


def default_algorithm() -> str:
    return "hios-lp"


def add_machine_args(p) -> None:
    p.add_argument("--gpus", type=int, default=1, help="GPU count (default 1)")
    p.add_argument("--link", default=DEFAULT_LINK, choices=list(LINK_PRESETS),
                   help=f"interconnect preset (default {DEFAULT_LINK})")
    p.add_argument("--alpha", type=float, default=None,
                   help=f"alpha of the HIOS stage model (default {DEFAULT_ALPHA}, or a measured profile's fit)")
    p.add_argument("--serialize-links", action="store_true", help="one transfer at a time per directed link")


def add_scheduler_args(p) -> None:
    p.add_argument("--algo", default=None,
                   help=f"algorithm(s): {'|'.join(ALGORITHMS)}|all, or a comma list (default {default_algorithm()})")
    p.add_argument("--window", type=int, default=None, help="intra-GPU sliding-window size")
    p.add_argument("--streams", type=int, default=None, help="intra-GPU streams per stage")
    p.add_argument("--no-intra", action="store_true", help="skip the intra-GPU step of HIOS")
    p.add_argument("--absorb-joins", type=float, default=None, metavar="FRACTION",
                   help="run each join and its cheap inputs (each at most FRACTION of the costliest input, "
                        "e.g. 0.25) on the costliest input's stream, one segment (default off)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="optimal: CP-SAT time limit (default 10 s of solver work; the result says whether it proved optimality)")


def add_output_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--trace", metavar="FILE", help="write the best schedule's timeline as a Chrome/Perfetto trace")
    p.add_argument("--gantt", metavar="PNG", help="draw the best schedule as a Gantt chart")


def add_model_args(p, required: bool = True) -> None:
    p.add_argument("--model", required=required, help=MODEL_HELP)
    p.add_argument("--image-size", type=int, required=required, default=None, help="input image side in pixels")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")


def add_cost_args(p) -> None:
    p.add_argument("--cost", dest="cost", default=None, metavar="profile|" + "|".join(ANALYTIC_GPUS) + "|FILE",
                   help="operator costs: measure on a GPU (profile), the analytic model of a GPU, or a "
                        "measured profile file (default: profile when a GPU is present, else h100)")


def add_kernels_arg(p, help: str) -> None:
    p.add_argument("--kernels", choices=KERNELS, default=None, help=help)


def add_tf32_arg(p) -> None:
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 tensor cores for convolutions and matrix products "
                        "(default strict fp32; the check then allows 1e-2)")


def add_run_args(p) -> None:
    p.add_argument("--devices", help="one device per plan GPU, e.g. cuda:0,cuda:1 or cuda:0,cuda:0 or cpu,cpu "
                                     "(default: cuda:0.. one per GPU, or cpu)")
    add_kernels_arg(p, "inductor (default on GPUs): each segment compiled by torch.compile; eager: ATen kernels")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="graph (default on GPUs): one CUDA graph per forward; stream: launches from Python")
    p.add_argument("--sync", choices=SYNC_MODES, default="data",
                   help="events only where values cross streams (data, default) or also stage barriers")
    g = p.add_argument_group("levers that shorten the critical path (docs/results/levers.md)")
    g.add_argument("--no-fuse-epilogues", dest="fuse_epilogues", action="store_false", default=True,
                   help="run convolution and its bias + ReLU as separate kernels (default: one cuDNN kernel "
                        "where the backend offers it)")
    g.add_argument("--concat-inplace", action="store_true",
                   help="branches write into their slice of a concatenation's output (no concat kernel)")
    g.add_argument("--merge-segments", action="store_true",
                   help="a segment runs on past synchronisation points that order nothing new")
    g.add_argument("--cudnn-benchmark", action="store_true",
                   help="cuDNN times its convolution algorithms while the plan is warmed up and captured "
                        "(graph mode; the CUDA graph keeps the fastest)")
    g.add_argument("--priority", choices=PRIORITIES, default="none",
                   help="CUDA stream priorities: none (default), stream0, or critical (streams on the critical path)")


def add_timing_args(p) -> None:
    """--warmup/--repeats/--inner (None when not given: the defaults of :class:`TimingOptions`)."""
    d = TimingOptions()
    p.add_argument("--warmup", type=int, default=None,
                   help=f"untimed calls before timing (default {d.warmup}; on CPU at most 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed samples; the median is reported (default {d.repeats}; on CPU a third of it, at least 3)")
    p.add_argument("--inner", type=int, default=None,
                   help=f"calls per timed sample (default {d.inner}; on CPU 1)")


def schedule_options(args) -> ScheduleOptions:
    return ScheduleOptions(gpus=1 if args.gpus is None else args.gpus, algorithms=default_algorithm() if args.algo is None else args.algo,
                           link=getattr(args, "link", DEFAULT_LINK),
                           serialize_links=getattr(args, "serialize_links", False), window=args.window,
                           streams=args.streams, intra=False if getattr(args, "no_intra", False) else None,
                           time_limit=getattr(args, "time_limit", None),
                           absorb_joins=getattr(args, "absorb_joins", None))


def stage_model(args):
    """The HIOS stage model of ``--alpha`` (checked)."""
    from ..cost.costmodel import HIOSStageModel
    alpha = CostOptions(alpha=args.alpha).alpha
    return HIOSStageModel(DEFAULT_ALPHA if alpha is None else alpha)


def cost_options(args, device: str | None = None) -> CostOptions:
    return CostOptions(source=args.cost, device=device, kernels=args.kernels, tf32=args.tf32,
                       alpha=getattr(args, "alpha", None))


def run_options(args) -> RunOptions:
    levers = Levers(merge_segments=args.merge_segments, fuse_epilogues=args.fuse_epilogues,
                    concat_inplace=args.concat_inplace, priority=args.priority,
                    cudnn_benchmark=getattr(args, "cudnn_benchmark", False))
    return RunOptions(devices=args.devices, kernels=args.kernels, mode=args.mode, sync=args.sync, tf32=args.tf32,
                      levers=levers)


def timing_options(args) -> TimingOptions:
    given = {k: getattr(args, k) for k in ("warmup", "repeats", "inner") if getattr(args, k) is not None}
    return TimingOptions(**given)
