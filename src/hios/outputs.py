"""Output files: checked before any work starts, written atomically, committed together at the end.

Steps of a command that writes files:
  1. :func:`check_output` every output path up front: the name ends in a known suffix, fits the
     file system's name length, it is not a folder, its parent folder exists and is writable; an
     :class:`OutputSet` also refuses two outputs that are one file and an output that is one of
     the command's inputs (paths compared after resolving symbolic links);
  2. each output is written to a hidden temporary file in the same folder (so the final rename
     never crosses a file system), ``.NAME.PID-XXXXXXXX.tmpSUFFIX`` with NAME cut so that the
     temporary name is never longer than the output's — :class:`OutputSet` holds them until the end;
  3. :meth:`OutputSet.commit` renames all of them in place (``os.replace``, atomic on POSIX; Ctrl-C
     and SIGTERM wait until the renames are done) only when the command has succeeded; on any
     error, interrupt included, the temporary files are removed.  Temporary files that a killed
     process left beside an output (its PID no longer runs) are removed when that output is
     written again.

So a failing or interrupted command leaves no new file behind, and a reader never sees a
half-written file.  Errors name the user's path, never the temporary file.
:func:`atomic_write_text` is step 2+3 for a single file.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from .errors import HiosError

__all__ = ["GRAPH", "IMAGE", "JSON", "OutputSet", "atomic_write", "atomic_write_text", "check_folder",
           "check_output", "clean_stale"]

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
    limit = _name_max(parent)
    if len(os.fsencode(p.name)) > limit:
        raise HiosError(f"{p}: cannot write the {what}: the file name is {len(os.fsencode(p.name))} bytes long, "
                        f"above this file system's limit of {limit}")
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


#: The hidden temporary name of an output: ``.NAME.PID-RANDOM.tmpSUFFIX`` (NAME cut to _STEM bytes).
_STEM = 100
_TEMP = re.compile(r"\.(\d+)-[a-z0-9_]+\.tmp")
_STALE_S = 3600.0  # a temporary file without a PID (older hios) this old is left over


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder if str(folder) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _stem(p: Path) -> str:
    return os.fsencode(p.name)[:_STEM].decode("utf-8", "ignore") or "x"


def _temp_in(p: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{_stem(p)}.{os.getpid()}-", suffix=f".tmp{p.suffix}",
                                dir=p.parent or ".")
    os.close(fd)
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary files of ``path`` that killed processes left behind: those whose
    PID no longer runs (and, from hios versions without a PID in the name, those over an hour old).
    Returns what was removed; anything that cannot be read or removed is left alone."""
    p = Path(path)
    head = f".{_stem(p)}."
    removed = []
    try:
        entries = list(os.scandir(p.parent or "."))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(head) or ".tmp" not in e.name[len(head):]:
            continue
        m = _TEMP.match(e.name[len(head) - 1:])
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            if m is not None:
                stale = int(m.group(1)) != os.getpid() and not _alive(int(m.group(1)))
            else:
                stale = time.time() - e.stat(follow_symlinks=False).st_mtime > _STALE_S
            if stale:
                os.unlink(e.path)
                removed.append(Path(e.path))
        except (OSError, ValueError):
            continue
    return removed


def _named(e: HiosError, tmp: Path, p: Path) -> HiosError:
    """``e`` with the temporary file's name replaced by the user's path."""
    text = str(e).replace(str(tmp), str(p))
    try:
        return type(e)(text)
    except TypeError:
        return HiosError(text)


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
    except HiosError as e:  # a writer that writes atomically itself names the temporary file
        tmp.unlink(missing_ok=True)
        raise _named(e, tmp, p) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


class _signals_held:
    """Ctrl-C and SIGTERM wait (are delivered after the block) while files are renamed in place."""

    def __enter__(self):
        self._old = None
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask"):
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


def _replace(tmp: Path, p: Path, what: str, error: type = HiosError) -> None:
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise error(f"{p}: cannot write the {what}: {e.strerror or e}") from None
    clean_stale(p)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], what: str = "file",
                 error: type = HiosError) -> None:
    """``write(tmp)`` fills a temporary file next to ``path``, which then replaces ``path``; a
    failure raises ``error`` (a HiosError subclass) naming the file."""
    p = Path(path)
    tmp = _write_temp(p, write, what, error)
    with _signals_held():
        _replace(tmp, p, what, error)


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "file", error: type = HiosError) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text), what, error)


def _output_key(p: Path) -> Path:
    """Where ``p`` is written: its folder with every symbolic link resolved, and its own name (a
    rename replaces a link at ``p`` itself, not what it points to)."""
    return Path(os.path.realpath(p.parent or ".")) / p.name


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
        self._wanted: dict[Path, tuple[Path, str]] = {}
        self._inputs: dict[Path, tuple[Path, str]] = {}
        self._staged: list[tuple[Path, Path, str]] = []

    def add(self, path, suffixes: Iterable[str], what: str) -> Path | None:
        p = check_output(path, suffixes, what)
        if p is None:
            return None
        key = _output_key(p)
        if key in self._wanted:
            raise HiosError(f"{p}: named both as the {self._wanted[key][1]} and the {what}")
        self._wanted[key] = (p, what)
        self._check_inputs()
        return p

    def add_input(self, path, what: str) -> None:
        """``path`` is read by the command (None passes): no output may replace it."""
        if path is None:
            return
        p = Path(path)
        for key in {_output_key(p), Path(os.path.realpath(p))}:
            self._inputs.setdefault(key, (p, what))
        self._check_inputs()

    def _check_inputs(self) -> None:
        for key, (p, what) in self._wanted.items():
            if key in self._inputs:
                src, src_what = self._inputs[key]
                raise HiosError(f"{p}: the {what} would overwrite the {src_what} {str(src)!r} that the command "
                                "reads; write it to another file")

    def stage(self, path, write: Callable[[Path], None]) -> None:
        if path is None:
            return
        p = Path(path)
        what = self._wanted.get(_output_key(p), (p, "file"))[1]
        self._staged.append((_write_temp(p, write, what), p, what))

    def stage_text(self, path, text: str) -> None:
        self.stage(path, lambda tmp: tmp.write_text(text))

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        with _signals_held():
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
