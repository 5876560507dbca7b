"""Old path of :mod:`hios.cost.costmodel`, kept while :mod:`hios.schedulers` and :mod:`hios.simulator`
import it from here."""

from .cost.costmodel import *  # noqa: F401,F403
from .cost.costmodel import __all__  # noqa: F401
