"""The one exception type that the CLI turns into a one-line message and exit code 2."""

__all__ = ["HiosError"]


class HiosError(Exception):
    """Bad input or an impossible request; ``str(err)`` is one line naming the culprit."""
