"""The exception types of hios, and how their messages name options.

:class:`HiosError` is what the CLI turns into a one-line message and exit code 2;
:class:`Terminated` is raised in the main thread by the CLI's SIGTERM handler, so that a
terminated command unwinds (removing its temporary files) like an interrupted one.

A message names an option through :func:`option`, by its field name in :mod:`hios.options` (or
the keyword of :func:`hios.optimize`): the library shows ``window`` or ``mode='stream'``, and the
CLI, which alone knows its flags, shows ``--window`` or ``--mode stream`` (:func:`render`).

Examples
--------
>>> str(HiosError(f"{option('window')} must be at least 1, got 0"))
'window must be at least 1, got 0'
>>> render(f"use {option('mode', 'stream')} on CPU", lambda f: "--" + f)
'use --mode stream on CPU'
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["HiosError", "HiosWarning", "Terminated", "option", "raw_message", "render"]

_OPTION = re.compile("\x1f([A-Za-z_][A-Za-z0-9_]*)(?:=([^\x1f]*))?\x1f")


def option(field: str, value=None) -> str:
    """An option named in a message: its field name and, optionally, a value."""
    return f"\x1f{field}\x1f" if value is None else f"\x1f{field}={value}\x1f"


def render(text: str, flag: Callable[[str], str] | None = None) -> str:
    """``text`` with its options shown by field name (``flag`` None: ``window``, ``mode='stream'``)
    or by ``flag(field)`` (``--window``, ``--mode stream``)."""
    def show(m: re.Match) -> str:
        field, value = m.group(1), m.group(2)
        if flag is None:
            return field if value is None else f"{field}={value if _number(value) else repr(value)}"
        return flag(field) if value is None else f"{flag(field)} {value}"
    return _OPTION.sub(show, text)


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def raw_message(exc: BaseException) -> str:
    """The message of ``exc`` with its options still marked (for :func:`render` with flags)."""
    return Exception.__str__(exc)


class HiosError(Exception):
    """Bad input or an impossible request; ``str(err)`` is one line naming the culprit."""

    def __str__(self) -> str:
        return render(Exception.__str__(self))


class HiosWarning(UserWarning):
    """A warning whose message may name options (:func:`option`)."""

    def __str__(self) -> str:
        return render(Exception.__str__(self))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as on Ctrl-C, and the CLI exits with 143 instead of 130."""
