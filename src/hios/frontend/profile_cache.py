"""The profiler's on-disk cache: keys, paths, and entries checked by their embedded key and content
hash (a mismatching entry is reported and re-measured, never used).  Torch-free."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..formats import graph_from_dict, graph_to_dict
from ..graph import Graph
from ..errors import HiosError

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "cache_key", "cache_path", "default_cache_dir", "read_cache",
           "structure_hash", "write_cache"]

CACHE_FORMAT = "hios-profile-cache"
CACHE_VERSION = 1


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _sha(obj) -> str:
    return hashlib.sha256(_canon(obj).encode()).hexdigest()


def structure_hash(graph: Graph) -> str:
    return _sha({"ops": [(o.name, o.kind, o.output_bytes) for o in graph.ops],
                 "edges": [(e.src, e.dst, e.bytes) for e in graph.edges]})


def cache_key(captured, dev_name: str, kernels: str, settings: dict) -> dict:
    """Model, input shapes/dtypes, graph structure, device, kernels, precision, settings, versions."""
    from ..timing import precision_state
    from .probe import library_versions
    ins = [{"shape": list(t.shape), "dtype": str(t.dtype)} for t in captured.example_inputs
           if hasattr(t, "shape")]
    return {"model": captured.graph.name, "inputs": ins, "structure": structure_hash(captured.graph),
            "device": dev_name, "kernels": kernels, "precision": precision_state(),
            "settings": settings, "versions": library_versions()}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hios" / "profiles"


def cache_path(cache_dir: Path, key: dict) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key["model"])[:60]
    return Path(cache_dir) / f"{safe}-{key['kernels']}-{_sha(key)[:16]}.json"


def write_cache(path: Path, key: dict, graph: Graph) -> None:
    gd = graph_to_dict(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                               "hash": _sha(gd), "graph": gd}))
    os.replace(tmp, path)


def read_cache(path: Path, key: dict) -> tuple[Graph | None, str | None]:
    """``(graph, None)`` for a valid entry, ``(None, reason)`` for a missing/corrupt/mismatched one."""
    if not path.exists():
        return None, None
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(d, dict) or d.get("format") != CACHE_FORMAT or d.get("version") != CACHE_VERSION:
        return None, "not a hios profile cache entry"
    if _canon(d.get("key")) != _canon(key):
        return None, "its key does not match this model/device/versions"
    if d.get("hash") != _sha(d.get("graph")):
        return None, "content hash mismatch (file corrupted or edited)"
    try:
        return graph_from_dict(d["graph"], str(path)), None
    except HiosError as e:
        return None, f"invalid graph ({e})"
