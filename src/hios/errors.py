"""The exception types of hios.

:class:`HiosError` is what the CLI turns into a one-line message and exit code 2;
:class:`Terminated` is raised in the main thread by the CLI's SIGTERM handler, so that a
terminated command unwinds (removing its temporary files) like an interrupted one."""

__all__ = ["HiosError", "Terminated"]


class HiosError(Exception):
    """Bad input or an impossible request; ``str(err)`` is one line naming the culprit."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as on Ctrl-C, and the CLI exits with 143 instead of 130."""
