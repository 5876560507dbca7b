"""The ``hios`` command line.  Each sub-command lives in its own module with
``add_parser(subparsers)`` and ``main(args) -> int``.

Any :class:`~hios.errors.HiosError` (and argparse's own usage errors) ends the program with a
one-line message on stderr and exit code 2, never a traceback.  Ctrl-C ends it with one line and
exit code 130, SIGTERM with one line and 143; both unwind the command, so its temporary files are
removed and no output of it is left.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings

from .. import faults
from ..errors import HiosError, Terminated
from .arguments import cli_text
from .oom import describe as out_of_memory_message

COMMANDS = ["generate", "simulate", "optimize", "profile", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hios", description="Hierarchical inter-operator scheduling of DAG-structured "
                                         "networks over GPUs and streams.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line on stderr: ``warning: <message>``."""
    text = cli_text(message).splitlines()[0] if str(message) else category.__name__
    print(f"warning: {text.removeprefix('hios: ')}", file=sys.stderr)


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds(args):
    """SIGTERM raises :class:`~hios.errors.Terminated` in the main thread while the command runs
    (where SIGTERM has its default action; the previous handler is restored afterwards).  Not in a
    torchrun rank (``--backend distributed``): torchrun stops its ranks with SIGTERM, which must end
    one blocked in a collective at once."""
    old = None
    if getattr(args, "backend", None) == "distributed":
        yield
        return
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        old = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings(), _sigterm_unwinds(args):
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except (HiosError, MemoryError, RuntimeError) as e:
        if not isinstance(e, HiosError) and not faults.is_out_of_memory(e):
            raise
        msg = out_of_memory_message(e, args) if faults.is_out_of_memory(e) else cli_text(e)
        print(f"hios {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        print(f"hios {args.command}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
