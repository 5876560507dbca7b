"""The profiler's on-disk cache: keys, paths, and entries checked by their embedded key and content
hash (a mismatching entry is reported and re-measured, never used).  Torch-free.

The cache never costs a result:

* :func:`usable_cache_dir` checks the folder up front: a ``--cache-dir`` that cannot be a folder is
  refused; the default folder (``$XDG_CACHE_HOME/hios/profiles``) that cannot be one is reported
  with one warning and the profile is measured without a cache;
* :func:`read_cache` turns every failure of reading an entry (not a regular file, unreadable,
  invalid JSON, nesting too deep, numbers too long, a wrong graph) into a reason: the caller warns
  once and re-measures;
* :func:`write_cache` writes through a hidden temporary file (:func:`hios.outputs.atomic_write_text`,
  removed on any failure) and turns a failed write (full disk, file size limit, a folder in the
  way) into one warning: the measured profile is still returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from pathlib import Path

from ..formats import graph_from_dict, graph_to_dict
from ..graph import Graph
from ..errors import HiosError, HiosWarning, option, raw_message

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "cache_key", "cache_path", "default_cache_dir", "read_cache",
           "structure_hash", "usable_cache_dir", "write_cache"]

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
    from .timing import precision_state
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


def usable_cache_dir(cache_dir=None) -> Path | bool:
    """The cache folder to use, checked before any work: ``cache_dir`` (refused with a HiosError when
    it cannot be a folder), or for None the default folder — False, with one warning, when that
    one cannot be a folder or written."""
    from ..outputs import check_folder
    if cache_dir is False:
        return False
    if cache_dir:
        return check_folder(cache_dir, option("cache_dir"))
    path = default_cache_dir()
    try:
        return check_folder(path, "the profile cache folder")
    except HiosError as e:
        warnings.warn(HiosWarning(f"{raw_message(e)}; profiling without the cache (set XDG_CACHE_HOME or "
                                  f"{option('cache_dir')})"), stacklevel=2)
        return False


def write_cache(path: Path, key: dict, graph: Graph) -> bool:
    """Store ``graph`` under ``key`` at ``path``; a failure is one warning (and no file), never an
    error: the caller has its measurement either way.  Returns whether the entry was written."""
    from ..outputs import atomic_write_text
    try:
        gd = graph_to_dict(graph)
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, "hash": _sha(gd),
                           "graph": gd})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, "profile cache entry")
        return True
    except HiosError as e:  # names the entry and the cause
        warnings.warn(f"{e}; the profile is not cached", stacklevel=2)
        return False
    except (OSError, ValueError, TypeError, RecursionError) as e:
        warnings.warn(f"{path}: cannot write the profile cache entry: {_why(e)}; the profile is not cached",
                      stacklevel=2)
        return False


def _read_entry(path: Path) -> dict:
    """The parsed JSON of a cache entry; raises on anything unreadable (the one place an entry is read)."""
    return json.loads(Path(path).read_text())


def read_cache(path: Path, key: dict) -> tuple[Graph | None, str | None]:
    """``(graph, None)`` for a valid entry, ``(None, reason)`` for a corrupt/mismatched one (the
    caller warns and re-measures), ``(None, None)`` when there is none."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, ValueError) as e:
        return None, f"unreadable ({_why(e)})"
    if not stat.S_ISREG(mode):
        return None, "not a regular file"
    try:
        d = _read_entry(path)
        if not isinstance(d, dict) or d.get("format") != CACHE_FORMAT or d.get("version") != CACHE_VERSION:
            return None, "not a hios profile cache entry"
        if _canon(d.get("key")) != _canon(key):
            return None, "its key does not match this model/device/versions"
        if d.get("hash") != _sha(d.get("graph")):
            return None, "content hash mismatch (file corrupted or edited)"
        return graph_from_dict(d["graph"], str(path)), None
    except HiosError as e:
        return None, f"invalid graph ({e})"
    except Exception as e:  # noqa: BLE001 - whatever is wrong with an entry, it is re-measured
        return None, f"unreadable ({_why(e)})"


def _why(e: BaseException) -> str:
    """One short line: the OS's reason, or the exception's type and the first line of its message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    if len(text) > 100:
        text = text[:97] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
