"""Exceptions that carry a user-facing one-line message.

The CLI prints ``UserError`` messages without a traceback and exits with
``exit_code``; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad suite, unknown plugin, ...)."""

    exit_code = 2


class SuiteError(UserError):
    """A suite file is invalid.  Formats as ``FILE: KEY: expectation``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


class PluginError(UserError):
    """A plugin could not be loaded or registered, or a name is unknown."""


class ResourceError(UserError):
    """The machine cannot do what was asked: a directory cannot be created or written, the disk is full.

    Exit status 3, so scripts can tell a resource problem from a suite mistake (2).
    """

    exit_code = 3


class RunBusy(UserError):
    """Another simbench process holds the run directory's lock."""

    exit_code = 3


class StageFailed(UserError):
    """A stage the rest of the run depends on (dataset load, zoo build) failed inside a plugin.

    The failure is recorded in the run directory's manifest; the message is
    one line naming the plugin.
    """

    exit_code = 3


class MeasurementFailed(Exception):
    """A metric raised, timed out, or returned invalid values for a cell."""


class ParamError(ValueError):
    """Raised by a plugin's ``__post_init__`` for a bad parameter value.

    ``key`` names the parameter so the suite error can point at it.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def one_line(exc: BaseException, limit: int = 300, *, typed: bool = True) -> str:
    """An exception as one line for a user-facing message, never a traceback.

    ``typed`` (the default): ``Type: first line of the message``, or ``Type``
    alone for an empty message (for an exception raised by plugin or library
    code).  ``typed=False``: the first line alone, or ``Type`` for an empty
    message (for our own exceptions, whose messages are already sentences).
    At most ``limit`` characters.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if typed:
        out = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    else:
        out = line or type(exc).__name__
    return out[:limit]
