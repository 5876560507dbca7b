"""Run several schedulers on one graph and machine and report them side by side.

Shared by ``hios simulate`` and ``hios optimize``; the JSON form is
``{"graph", "gpus", "lower_bound", "critical_path", "work_per_gpu", "sequential", "results": [...]}``
with one record per algorithm.  A scheduler that proves something (``optimal``) adds
``"proof": {"status", "proven_optimal", "objective", "bound", "gap"}`` to its record and a
"proof" column to the table.  An algorithm that will not take the graph (``optimal`` beyond its
size limits) is skipped, with its reason under ``"skipped"``, when other algorithms run; asked
for alone, it is an error.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from .bounds import lower_bounds
from .cost.costmodel import StageModel
from .graph import Graph
from .machine import Machine
from .schedule import Schedule
from .errors import HiosError
from .schedulers import ALGORITHMS, PASS_OPTIONS, refusal, schedule
from .simulator import SimResult, Simulator

__all__ = ["Comparison", "PROOF_KEYS", "compare", "format_table", "options_for"]


@dataclass
class Comparison:
    graph: Graph
    machine: Machine
    schedules: dict[str, Schedule] = field(default_factory=dict)
    results: dict[str, SimResult] = field(default_factory=dict)
    stage_model: StageModel | None = None  # the model the results were simulated under (bounds depend on it)
    skipped: dict[str, str] = field(default_factory=dict)  # algorithm -> why it did not run

    @property
    def best(self) -> str:
        return min(self.results, key=lambda a: self.results[a].latency)

    def to_dict(self) -> dict:
        lb = lower_bounds(self.graph, self.machine.gpus, self.stage_model)
        recs = []
        for name, s in self.schedules.items():
            r = self.results[name]
            recs.append({"algorithm": name, "latency": r.latency,
                         "ratio_to_lower_bound": r.latency / lb.value if lb.value > 0 else None,
                         "optimize_seconds": s.meta.get("optimize_seconds"),
                         "assignment": s.assignment(),
                         "stages": [[list(st) for st in sts] for sts in s.stages]})
            if "proven_optimal" in s.meta:
                recs[-1]["proof"] = {k: s.meta.get(k) for k in PROOF_KEYS}
        out = {"graph": self.graph.name, "gpus": self.machine.gpus, "lower_bound": lb.value,
               "critical_path": lb.critical_path, "work_per_gpu": lb.work_per_gpu,
               "sequential": self.graph.total_work(), "results": recs}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        return out


PROOF_KEYS = ("status", "proven_optimal", "objective", "bound", "gap")


def _proof_cell(proof: dict | None) -> str:
    if not proof:
        return "-"
    head = "optimal" if proof["proven_optimal"] else f"gap {100 * proof['gap']:.2f}%"
    return f"{head} ({proof['status']}), bound {proof['bound']:.4f}"


def options_for(algorithm: str, options: dict) -> dict:
    """The subset of ``options`` that ``algorithm`` accepts, with the passes every algorithm takes
    (:data:`hios.schedulers.PASS_OPTIONS`); None values dropped."""
    params = inspect.signature(ALGORITHMS[algorithm]).parameters
    return {k: v for k, v in options.items() if (k in params or k in PASS_OPTIONS) and v is not None}


def compare(graph: Graph, machine: Machine, algorithms: list[str], options: dict | None = None,
            stage_model: StageModel | None = None, serialize_links: bool = False,
            given: Schedule | None = None, progress=None, note=None) -> Comparison:
    """Schedule ``graph`` with each of ``algorithms`` and simulate the results.  An algorithm
    that refuses the graph (:func:`hios.schedulers.refusal`) is skipped, and ``note`` (if given)
    called with one line saying why, unless it is the only one asked for: then its reason is
    raised as a :class:`HiosError`."""
    sim = Simulator(graph, machine, stage_model, serialize_links)
    # schedulers that take the link model plan under it
    options = {**(options or {}), "serialize_links": True if serialize_links else None}
    cmp = Comparison(graph, machine, stage_model=stage_model)
    if given is not None:  # evaluated, not optimized here: no optimize time of its own
        given = Schedule(given.stages, given.algorithm,
                         {k: v for k, v in given.meta.items() if k != "optimize_seconds"})
        cmp.schedules[given.algorithm] = given
        cmp.results[given.algorithm] = sim.simulate(given)
    for name in algorithms:
        why = refusal(name, graph, stage_model, **options_for(name, options))
        if why:
            if len(algorithms) == 1 and given is None:
                raise HiosError(why)
            cmp.skipped[name] = why
            if note:
                note(f"{name} skipped: {why}")
            continue
        if progress:
            progress(name)
        s = schedule(graph, machine, name, stage_model=stage_model, **options_for(name, options))
        cmp.schedules[name] = s
        cmp.results[name] = sim.simulate(s)
    return cmp


def format_table(cmp: Comparison) -> str:
    d = cmp.to_dict()
    head = (f"{d['graph']}: {len(cmp.graph)} operators, {len(cmp.graph.edges)} edges, {d['gpus']} GPU(s)\n"
            f"lower bound {d['lower_bound']:.4f} ms (critical path {d['critical_path']:.4f}, "
            f"work/GPU {d['work_per_gpu']:.4f}); sequential {d['sequential']:.4f} ms\n")
    proofs = any("proof" in r for r in d["results"])
    rows = [("algorithm", "latency ms", "x lower bound", "speedup vs seq", "optimize s") + (("proof",) if proofs else ())]
    for r in d["results"]:
        rows.append((r["algorithm"], f"{r['latency']:.4f}",
                     f"{r['ratio_to_lower_bound']:.3f}" if r["ratio_to_lower_bound"] else "-",
                     f"{d['sequential'] / r['latency']:.3f}" if r["latency"] > 0 else "-",
                     f"{r['optimize_seconds']:.4f}" if r["optimize_seconds"] is not None else "-")
                    + ((_proof_cell(r.get("proof")),) if proofs else ()))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return head + "\n".join(lines)
