"""The model a sub-command works on: ``--model`` (zoo name or ``package.module:factory``),
``--image-size`` and ``--batch``, built with :func:`hios.frontend.zoo.build`."""

from __future__ import annotations

import sys

from ..limits import check_input
from ..optional import require


def log(message: str) -> None:
    """A progress message: one line on stderr (stdout carries the result), options named by flag."""
    from .arguments import cli_text
    print(cli_text(message), file=sys.stderr)


def require_torch(command: str) -> None:
    require("torch", command)


def model_label(args) -> str:
    """The graph name of a zoo model at a size, e.g. ``inception_v3-299``."""
    return f"{args.model.split(':')[-1]}-{args.image_size}"


def model_info(args, image_size: int | None = None) -> dict:
    """What a plan records of the model (``hios run plan.json`` rebuilds a zoo model from it)."""
    return {"name": args.model, "image_size": image_size or args.image_size, "batch": args.batch}


def build_model(args, name: str | None = None, image_size: int | None = None, batch: int | None = None):
    """(model, example inputs) for the arguments (or the given overrides), with a progress line."""
    from ..frontend.zoo import build
    name = name or args.model
    size = image_size or args.image_size
    batch = batch or args.batch
    check_input(size, batch)  # the limits, before the progress line and any allocation
    log(f"building {name} at {size} px, batch {batch}...")
    return build(name, size, batch)
