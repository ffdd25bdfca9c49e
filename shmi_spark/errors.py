"""Errors that end a command with a clear message instead of a traceback.

``InputError`` (exit code 2): the user's input or usage is wrong: a missing
file, a missing column, a bad setting.  Anything else is an internal failure
(exit code 1).
"""

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input or usage; the message names the file and the field."""
