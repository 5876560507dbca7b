"""Output files: checked before any work starts, written atomically, committed together at the end.

Steps of a command that writes files:
  1. :func:`check_output` every output path up front: the name ends in a known suffix, it is not a
     folder, its parent folder exists and is writable, and no two outputs name the same file;
  2. each output is written to a temporary file in the same folder (so the final rename never
     crosses a file system) — :class:`OutputSet` holds them until the end;
  3. :meth:`OutputSet.commit` renames all of them in place (``os.replace``, atomic on POSIX) only
     when the command has succeeded; on any error the temporary files are removed.

So a failing command leaves no new file behind, and a reader never sees a half-written file.
:func:`atomic_write_text` is step 2+3 for a single file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import HiosError

__all__ = ["GRAPH", "IMAGE", "JSON", "OutputSet", "atomic_write", "atomic_write_text", "check_folder",
           "check_output"]

JSON = (".json",)
GRAPH = (".json", ".txt")
#: What matplotlib's Agg backend can write (a Gantt chart).
IMAGE = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def _suffixes(suffixes: Iterable[str]) -> str:
    s = list(suffixes)
    return s[0] if len(s) == 1 else ", ".join(s[:-1]) + " or " + s[-1]


def check_output(path: str | os.PathLike | None, suffixes: Iterable[str], what: str) -> Path | None:
    """Refuse an output path that cannot be written (see the module steps); None passes."""
    if path is None:
        return None
    suffixes = tuple(suffixes)
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise HiosError(f"{path!r}: not a file name for the {what}")
    if p.suffix.lower() not in suffixes:
        raise HiosError(f"{p}: unknown {what} format {p.suffix!r} (use {_suffixes(suffixes)})")
    parent = p.parent
    try:
        if p.is_dir():
            raise HiosError(f"{p}: cannot write the {what}: it is a folder")
        if not parent.exists():
            raise HiosError(f"{p}: cannot write the {what}: folder {str(parent)!r} does not exist")
        if not parent.is_dir():
            raise HiosError(f"{p}: cannot write the {what}: {str(parent)!r} is not a folder")
    except OSError as e:  # e.g. a name too long
        raise HiosError(f"{p}: cannot write the {what}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HiosError(f"{p}: cannot write the {what}: folder {str(parent)!r} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise HiosError(f"{p}: cannot write the {what}: the existing file is not writable")
    return p


def check_folder(path: str | os.PathLike | None, what: str) -> Path | None:
    """A folder that exists or can be made: no part of it is a file; None passes."""
    if path is None or path is False:
        return None
    p = Path(path)
    q = p
    try:
        while not q.exists():
            if q.parent == q:
                break
            q = q.parent
        if not q.is_dir():
            where = "is a file" if q == p else f"is under {str(q)!r}, which is a file"
            raise HiosError(f"{what} {str(p)!r} {where}; give a folder")
    except OSError as e:
        raise HiosError(f"{what} {str(p)!r}: {e.strerror or e}") from None
    if not os.access(q, os.W_OK | os.X_OK):
        raise HiosError(f"{what} {str(p)!r}: {str(q)!r} is not writable")
    return p


def _temp_in(p: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".tmp{p.suffix}", dir=p.parent or ".")
    os.close(fd)
    return Path(name)


def _write_temp(p: Path, write: Callable[[Path], None], what: str, error: type = HiosError) -> Path:
    try:
        tmp = _temp_in(p)
    except OSError as e:
        raise error(f"{p}: cannot write the {what}: {e.strerror or e}") from None
    try:
        write(tmp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise error(f"{p}: cannot write the {what}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace(tmp: Path, p: Path, what: str, error: type = HiosError) -> None:
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise error(f"{p}: cannot write the {what}: {e.strerror or e}") from None


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], what: str = "file",
                 error: type = HiosError) -> None:
    """``write(tmp)`` fills a temporary file next to ``path``, which then replaces ``path``; a
    failure raises ``error`` (a HiosError subclass) naming the file."""
    p = Path(path)
    _replace(_write_temp(p, write, what, error), p, what, error)


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "file", error: type = HiosError) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text), what, error)


class OutputSet:
    """The outputs of one command: checked when added, written to temporary files when staged,
    renamed in place together by :meth:`commit`.  Used as a context manager, an exception before
    :meth:`commit` removes every staged file::

        with OutputSet() as out:
            out.add(args.output, JSON, "schedule")      # checked now, before any work
            ...                                          # the work
            out.stage(args.output, lambda p: sched.save(p))
            out.commit()
    """

    def __init__(self) -> None:
        self._wanted: dict[Path, str] = {}
        self._staged: list[tuple[Path, Path, str]] = []

    def add(self, path, suffixes: Iterable[str], what: str) -> Path | None:
        p = check_output(path, suffixes, what)
        if p is None:
            return None
        key = Path(os.path.abspath(p))
        if key in self._wanted:
            raise HiosError(f"{p}: named both as the {self._wanted[key]} and the {what}")
        self._wanted[key] = what
        return p

    def stage(self, path, write: Callable[[Path], None]) -> None:
        if path is None:
            return
        p = Path(path)
        what = self._wanted.get(Path(os.path.abspath(p)), "file")
        self._staged.append((_write_temp(p, write, what), p, what))

    def stage_text(self, path, text: str) -> None:
        self.stage(path, lambda tmp: tmp.write_text(text))

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        for k, (tmp, p, what) in enumerate(staged):
            try:
                _replace(tmp, p, what)
            except HiosError:
                for t, _, _ in staged[k + 1:]:
                    t.unlink(missing_ok=True)
                raise

    def discard(self) -> None:
        for tmp, _, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
