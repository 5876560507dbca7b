"""Typed field getters for the readers of hios files: every refusal names the file and the field path.

A reader wraps the parsed JSON value in a :class:`Field` (the file's name, the path from the root)
and asks it for what it needs.  Steps of one read:

  1. Walk down: ``f["stage_model"]`` (a required key of an object), ``f.get("meta")`` (an
     optional one: None when absent or null), ``f.items()`` (the elements of a list), each a
     Field whose path grows (``stage_model.groups[3].time``).
  2. Take the value with its type and range checked: :meth:`~Field.obj`, :meth:`~Field.string`,
     :meth:`~Field.number`, :meth:`~Field.integer`, :meth:`~Field.boolean`.
  3. A wrong value raises a one-line :class:`~hios.graph.GraphError`, e.g.
     ``plan.json: stage_model.groups[3].time: expected a number, got 'x'``.

Pure: no I/O, nothing stored between calls.

Examples
--------
>>> from hios.fields import Field
>>> f = Field({"stage_model": {"groups": [{"time": "x"}]}}, "plan.json")
>>> f["stage_model"]["groups"].items()[0]["time"].number()
Traceback (most recent call last):
    ...
hios.graph.GraphError: plan.json: stage_model.groups[0].time: expected a number, got 'x'
>>> f.get("meta") is None, f["stage_model"].path
(True, 'stage_model')
"""

from __future__ import annotations

import math
from typing import Any

from .graph import GraphError

__all__ = ["Field", "show"]


def show(x) -> str:
    """A short, one-line description of a JSON value for a message: the value itself when it is
    small, else its kind (``a list of 3``, ``an object``, ``a 400-digit integer``)."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, dict):
        return "an object"
    if isinstance(x, list):
        return f"a list of {len(x)}" if x else "an empty list"
    if isinstance(x, int) and abs(x) >= 10 ** 30:
        return f"a {len(str(abs(x)))}-digit integer"
    r = " ".join(repr(x).split())
    return r if len(r) <= 60 else r[:57] + "..."


class Field:
    """One JSON value inside the file ``where``, reached from the root by ``key`` of ``parent``
    (see the module docstring); the path is only spelled out for a message."""

    __slots__ = ("value", "where", "parent", "key")

    def __init__(self, value: Any, where: str, parent: "Field | None" = None, key: str | int | None = None):
        self.value, self.where, self.parent, self.key = value, where, parent, key

    @property
    def path(self) -> str:
        """``stage_model.groups[3].time``; empty at the root."""
        if self.parent is None:
            return ""
        up = self.parent.path
        if isinstance(self.key, int):
            return f"{up}[{self.key}]"
        return f"{up}.{self.key}" if up else str(self.key)

    # -- messages -------------------------------------------------------------------------------
    def problem(self, text: str) -> GraphError:
        """A one-line error about this field: ``WHERE: PATH: text``."""
        path = self.path
        return GraphError(f"{self.where}: {path}: {text}" if path else f"{self.where}: {text}")

    def fail(self, expected: str) -> GraphError:
        return self.problem(f"expected {expected}, got {show(self.value)}")

    # -- walking down ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> "Field":
        """The required key ``key`` of this object."""
        d = self.obj()
        if key not in d:
            raise Field(None, self.where, self, key).problem("missing")
        return Field(d[key], self.where, self, key)

    def get(self, key: str, nullable: bool = False) -> "Field | None":
        """The optional key ``key`` of this object: None when absent (or null, when ``nullable``;
        else a null is a value of the wrong type)."""
        d = self.obj()
        if key not in d or (nullable and d[key] is None):
            return None
        return Field(d[key], self.where, self, key)

    def items(self, nonempty: bool = False) -> list["Field"]:
        """The elements of this list."""
        if not isinstance(self.value, list) or (nonempty and not self.value):
            raise self.fail("a non-empty list" if nonempty else "a list")
        return [Field(v, self.where, self, k) for k, v in enumerate(self.value)]

    def entries(self) -> list[tuple[str, "Field"]]:
        """The ``(key, value)`` pairs of this object."""
        return [(k, Field(v, self.where, self, k)) for k, v in self.obj().items()]

    # -- typed values -----------------------------------------------------------------------------
    def obj(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.fail("an object")
        return self.value

    def string(self, nonempty: bool = False, choices: tuple[str, ...] = ()) -> str:
        v = self.value
        if not isinstance(v, str) or (nonempty and not v):
            raise self.fail("a non-empty string" if nonempty else "a string")
        if choices and v not in choices:
            raise self.fail("one of " + ", ".join(choices))
        return v

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail("true or false")
        return self.value

    def number(self, minimum: float = 0.0, maximum: float = math.inf, positive: bool = False,
               why: str = "") -> int | float:
        """A finite JSON number (not a boolean) in ``[minimum, maximum]`` (``> minimum`` when
        ``positive``), returned as it is (an int stays an int); integers of any size are compared
        exactly.  ``why``: the reason for ``maximum`` when it is a limit of :mod:`hios.limits`."""
        v = self.value
        if type(v) not in (int, float):
            raise self.fail("a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail("a finite number")
        if v < minimum or (positive and v == minimum):
            raise self.fail(f"a number {'>' if positive else '>='} {minimum:g}")
        if v > maximum:
            if why:
                raise self.problem(f"{show(v)} is above the limit of {maximum:g} ({why}; see hios.limits)")
            raise self.fail(f"a number <= {maximum:g}")
        return v

    def integer(self, minimum: int = 0, maximum: int | None = None) -> int:
        v = self.value
        if type(v) is not int:
            raise self.fail("an integer")
        if v < minimum or (maximum is not None and v > maximum):
            raise self.fail(f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
        return v

    def version(self, current: int, kind: str) -> int:
        """A format version this hios reads: an integer in ``1 .. current``."""
        v = self.value
        if type(v) is not int or not 1 <= v <= current:
            raise self.problem(f"unsupported {kind} version {show(v)} (this hios reads version {current})")
        return v
