"""Model zoo: the DAG-structured networks of the HIOS/IOS studies, random weights, eval mode.

``build(name_or_spec, image_size, batch)`` returns ``(model, example_inputs)`` for

* ``inception_v3``, ``googlenet``, ``squeezenet1_1`` — torchvision (extra ``hios[vision]``);
* ``nasnetalarge`` — timm (extra ``hios[timm]``);
* ``randwire`` — a randomly wired network (Xie et al., 2019, small regime) built here from
  Watts–Strogatz graphs with networkx;
* ``package.module:factory`` — any model: ``factory(image_size=..., batch=...)`` when the factory
  accepts those keywords, else ``factory()``.  A failing import, attribute or call (or one that
  calls ``sys.exit``) is a one-line :class:`HiosError`; modules in the current folder are found.

A plan file names its model, but a plan is data: :func:`plan_model_spec` builds a zoo model by
name and imports a factory only when the user names the model (``--model``) or trusts the plan
(``--trust-plan``).

The example input is ``batch x 3 x S x S`` drawn from a fixed seed; weights come from a fixed
seed too (nothing downloads) and the global RNG state is left untouched.  Zoo models get a
variance-preserving initialization (He-normal convolution and linear weights, zero biases): with
PyTorch's default initialization the activations of these deep networks shrink by orders of
magnitude (≈1e-8 before the classifier of inception_v3), which makes outputs meaningless for
checking correctness and can hit slow denormal arithmetic on CPUs.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from typing import Callable

from ..errors import HiosError, option
from ..fields import show
from ..faults import is_out_of_memory
from ..limits import check_input
from ..optional import require

MODELS = ["inception_v3", "googlenet", "squeezenet1_1", "nasnetalarge", "randwire"]
SEED = 0
#: The element type of the example input :func:`build` makes.
INPUT_DTYPE = "float32"


def _inception_v3():
    return require("torchvision", "model inception_v3").models.inception_v3(weights=None, aux_logits=False, init_weights=False)


def _googlenet():
    return require("torchvision", "model googlenet").models.googlenet(weights=None, aux_logits=False, init_weights=False)


def _squeezenet1_1():
    return require("torchvision", "model squeezenet1_1").models.squeezenet1_1(weights=None)


def _nasnetalarge():
    try:
        import timm
    except ImportError:
        raise HiosError("model 'nasnetalarge' needs timm: pip install hios[timm]") from None
    return timm.create_model("nasnetalarge", pretrained=False, num_classes=1000)


def _randwire():
    from .randwire import randwire
    return randwire()


_BUILDERS: dict[str, Callable] = {
    "inception_v3": _inception_v3,
    "googlenet": _googlenet,
    "squeezenet1_1": _squeezenet1_1,
    "nasnetalarge": _nasnetalarge,
    "randwire": _randwire,
}


def _factory(spec: str) -> Callable:
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise HiosError(f"model spec {spec!r} must look like 'package.module:factory'")
    try:
        with _cwd_importable():
            mod = importlib.import_module(mod_name)
    except MemoryError:
        raise
    except (Exception, SystemExit) as e:  # the module's own code runs here: any error, or sys.exit()
        raise HiosError(f"model spec {spec!r}: cannot import {mod_name!r} ({_why(e)})") from None
    obj = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HiosError(f"model spec {spec!r}: {mod_name!r} has no attribute {attr!r}") from None
        except MemoryError:
            raise
        except (Exception, SystemExit) as e:  # a property or module __getattr__ that raises
            raise HiosError(f"model spec {spec!r}: reading {part!r} failed ({_why(e)})") from None
    if not callable(obj):
        raise HiosError(f"model spec {spec!r}: {attr!r} is not callable")
    return obj


def _call_factory(fn: Callable, spec: str, image_size: int, batch: int):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in (("image_size", image_size), ("batch", batch)) if takes_kw or k in params}
    try:
        return fn(**kwargs)
    except (HiosError, MemoryError):
        raise
    except Exception as e:
        if is_out_of_memory(e):  # reported as out of memory by the CLI, with model, size and device
            raise
        raise HiosError(f"model spec {spec!r}: the factory failed: {_why(e)}") from None
    except SystemExit as e:
        raise HiosError(f"model spec {spec!r}: the factory failed: {_why(e)}") from None


def _why(e: BaseException) -> str:
    """``Type: first line`` of an exception (``sys.exit(N)`` as such)."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    if isinstance(e, SyntaxError) and e.lineno:
        first = f"{e.msg} ({e.filename}, line {e.lineno})"
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


@contextlib.contextmanager
def _cwd_importable():
    """The current folder is searched for the factory's module, last (as ``python -m hios`` does,
    first), so that ``hios`` and ``python -m hios`` find the same factories and nothing in the
    current folder shadows an installed package."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def is_factory(name: str) -> bool:
    """Whether a model name is a ``package.module:factory`` spec (not a zoo model)."""
    return name not in _BUILDERS and ":" in name


def plan_model_spec(name: str, given: str | None = None, trust: bool = False, where: str = "plan") -> str:
    """The model to build for a plan whose ``model.name`` is ``name``.  A plan is data: a zoo
    model is built by name, but a ``package.module:factory`` it names is imported only when the
    user names a model (``given``: ``hios run --model``) or trusts the plan (``trust``:
    ``--trust-plan``); otherwise a one-line :class:`HiosError` says how.  ``given`` wins, unless
    both name zoo models and differ."""
    if given:
        if given in _BUILDERS and name in _BUILDERS and given != name:
            raise HiosError(f"{where}: the plan was made for {name}, not {given} ({option('model')})")
        return given
    if name in _BUILDERS or (trust and is_factory(name)):
        return name
    if is_factory(name):
        raise HiosError(f"{where}: model.name {show(name)} is a factory (module:function); a plan is data and "
                        f"hios does not import code a plan names: give {option('model')} with the model to run (or "
                        f"{option('trust_plan')} if you trust this plan's author)")
    raise HiosError(f"{where}: model.name {show(name)} is not a zoo model ({', '.join(MODELS)}); give "
                    f"{option('model')} with the model the plan was made for")


def _init_weights(model) -> None:
    torch = require("torch", "the PyTorch front end")
    nn = torch.nn
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if isinstance(m, nn.Linear):
                    m.weight.mul_(0.5 ** 0.5)  # no ReLU after the classifier
                if m.bias is not None:
                    m.bias.zero_()


def build(name_or_spec: str, image_size: int, batch: int = 1):
    """(model in eval mode, (input,)) for a zoo name or ``package.module:factory``."""
    check_input(image_size, batch)  # before anything is allocated (see hios.limits)
    torch = require("torch", "the PyTorch front end")
    if not isinstance(name_or_spec, str):
        raise HiosError(f"model must be a name or 'package.module:factory', got {name_or_spec!r}")
    if name_or_spec in _BUILDERS:
        call = _BUILDERS[name_or_spec]
    elif ":" in name_or_spec:
        fn = _factory(name_or_spec)
        call = lambda: _call_factory(fn, name_or_spec, image_size, batch)  # noqa: E731
    else:
        raise HiosError(f"unknown model {name_or_spec!r}; choose one of {', '.join(MODELS)} "
                        "or give 'package.module:factory'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = call()
        if name_or_spec in _BUILDERS:
            _init_weights(model)
    if not isinstance(model, torch.nn.Module):
        raise HiosError(f"model {name_or_spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(batch, 3, image_size, image_size, generator=gen, dtype=getattr(torch, INPUT_DTYPE))
    return model, (x,)


__all__ = ["INPUT_DTYPE", "MODELS", "build", "is_factory", "plan_model_spec"]
