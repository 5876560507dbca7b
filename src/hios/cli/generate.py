"""``hios generate``: a layered random DAG of the HIOS simulation study."""

from __future__ import annotations

import sys

from ..formats import save_graph
from ..generate import layered_dag
from ..outputs import GRAPH, check_output


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate a layered random DAG (HIOS simulation study)",
                       description="Generate the layered random DAG of the HIOS simulation study: a source, "
                                   "--layers inner layers, a sink; weights uniform in [0.1, 4.0] ms, "
                                   "utilization in [0.6, 1.0], edge weight = destination weight x --comm-ratio. "
                                   "The same arguments and seed give the same file.")
    p.add_argument("--nodes", type=int, default=200, help="operator count (default 200)")
    p.add_argument("--edges", type=int, default=400, help="edge count (default 400)")
    p.add_argument("--layers", type=int, default=8, help="inner layer count (default 8)")
    p.add_argument("--comm-ratio", type=float, default=0.8, help="edge weight / destination weight (default 0.8)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", required=True, help="output file, .txt (HIOS format) or .json")
    p.set_defaults(func=main)


def main(args) -> int:
    check_output(args.output, GRAPH, "graph")
    g = layered_dag(args.nodes, args.edges, args.layers, args.comm_ratio, args.seed)
    save_graph(g, args.output)  # atomic: a temporary file, then renamed
    print(f"wrote {args.output}: {len(g)} operators, {len(g.edges)} edges", file=sys.stderr)
    return 0
