"""Machine model: N GPUs and the links between them, and the transfer-time rule.

Transfer time of an edge between two operators:
  * zero when both ends run on the same GPU;
  * the edge's explicit ``time`` when it has one;
  * else ``latency + bytes / bandwidth`` of the link between the two GPUs.

Bandwidths are per direction, in GB/s (1e9 bytes/s); latencies in µs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .graph import Edge, GraphError
from .limits import MAX_GPUS, WHY

__all__ = ["DEFAULT_LINK", "LINK_PRESETS", "Link", "Machine", "link_preset"]


@dataclass(frozen=True)
class Link:
    bandwidth_gbps: float  # GB/s per direction
    latency_us: float = 5.0
    name: str = "custom"

    def __post_init__(self):
        bw, lat = self.bandwidth_gbps, self.latency_us
        if isinstance(bw, bool) or not isinstance(bw, (int, float)) or not (math.isfinite(bw) and bw > 0):
            raise GraphError(f"link {self.name!r}: bandwidth must be a finite number > 0 GB/s, got {bw!r}")
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not (math.isfinite(lat) and lat >= 0):
            raise GraphError(f"link {self.name!r}: latency must be a finite number >= 0 us, got {lat!r}")

    def transfer_ms(self, nbytes: int) -> float:
        return self.latency_us * 1e-3 + nbytes / (self.bandwidth_gbps * 1e6)


#: Usual interconnects: per-direction bandwidth between two GPUs and a one-copy latency.
#: NVLink figures are the GPU-to-GPU aggregate of all links of a fully connected pair
#: (V100: NVLink 2, 6 links x 25 GB/s; A100: NVLink 3, 12 x 25; H100/H200: NVLink 4, 18 x 25);
#: PCIe figures are x16 rates after protocol overhead.
LINK_PRESETS: dict[str, Link] = {
    "nvlink-v100": Link(150.0, 8.0, "nvlink-v100"),
    "nvlink-a100": Link(300.0, 6.0, "nvlink-a100"),
    "nvlink-h100": Link(450.0, 5.0, "nvlink-h100"),
    "nvlink-h200": Link(450.0, 5.0, "nvlink-h200"),
    "pcie3": Link(12.0, 10.0, "pcie3"),
    "pcie4": Link(25.0, 10.0, "pcie4"),
    "pcie5": Link(50.0, 10.0, "pcie5"),
}
DEFAULT_LINK = "nvlink-h100"


def link_preset(name: str) -> Link:
    try:
        return LINK_PRESETS[name]
    except KeyError:
        raise GraphError(f"unknown link preset {name!r}; choose one of {', '.join(LINK_PRESETS)}") from None


@dataclass(frozen=True)
class Machine:
    """``gpus`` GPUs, every pair joined by ``link`` unless ``links`` overrides a directed pair.

    Examples
    --------
    >>> from hios import Machine
    >>> m = Machine.preset(2, "nvlink-h100")
    >>> m.gpus, m.link_between(0, 1) is m.link
    (2, True)
    """

    gpus: int = 1
    link: Link = field(default_factory=lambda: LINK_PRESETS[DEFAULT_LINK])
    links: dict[tuple[int, int], Link] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 1:
            raise GraphError(f"GPU count must be an integer >= 1, got {self.gpus!r}")
        if self.gpus > MAX_GPUS:
            raise GraphError(f"GPU count {self.gpus} is above the limit of {MAX_GPUS} ({WHY['gpus']}; see hios.limits)")
        if not isinstance(self.link, Link):
            raise GraphError(f"machine link must be a Link, got {self.link!r}")
        for (a, b) in self.links:
            if not (0 <= a < self.gpus and 0 <= b < self.gpus) or a == b:
                raise GraphError(f"link ({a}, {b}) does not join two distinct GPUs of {self.gpus}")

    @classmethod
    def preset(cls, gpus: int, link: str = DEFAULT_LINK) -> "Machine":
        return cls(gpus, link_preset(link))

    def link_between(self, a: int, b: int) -> Link:
        return self.links.get((a, b), self.link)

    def transfer_ms(self, edge: Edge, src_gpu: int, dst_gpu: int) -> float:
        if src_gpu == dst_gpu:
            return 0.0
        if edge.time is not None:
            return edge.time
        return self.link_between(src_gpu, dst_gpu).transfer_ms(edge.bytes)

    def uniform(self) -> bool:
        """True when every pair of GPUs has the same link (transfer time independent of the pair)."""
        return not self.links

    # -- serialization ---------------------------------------------------
    def to_dict(self) -> dict:
        def ld(l: Link) -> dict:
            return {"bandwidth_gbps": l.bandwidth_gbps, "latency_us": l.latency_us, "name": l.name}
        return {"gpus": self.gpus, "link": ld(self.link),
                "links": [{"src": a, "dst": b, **ld(l)} for (a, b), l in sorted(self.links.items())]}

    @classmethod
    def from_dict(cls, d: dict) -> "Machine":
        def lk(x: dict) -> Link:
            return Link(float(x["bandwidth_gbps"]), float(x.get("latency_us", 5.0)), str(x.get("name", "custom")))
        def whole(x) -> int:
            if not isinstance(x, int) or isinstance(x, bool):
                raise TypeError(f"{x!r} is not an integer")
            return x
        try:
            links = {(whole(x["src"]), whole(x["dst"])): lk(x) for x in d.get("links", [])}
            return cls(whole(d["gpus"]), lk(d["link"]), links)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            if isinstance(e, GraphError):
                raise
            raise GraphError(f"malformed machine description ({type(e).__name__}: {str(e)[:80]}); expected "
                             "{\"gpus\": N, \"link\": {\"bandwidth_gbps\", \"latency_us\"}, \"links\": [...]}") from None
