"""Specific exceptions raised by library code.

Only the CLI entry point (`edge.cli.main`) turns them into one-line messages and exit codes;
library code never prints and never exits.
"""


class RustsegError(Exception):
    """Base of every error the CLI reports as one line. `exit_code` is what the CLI returns."""

    exit_code = 2


class ConfigError(RustsegError):
    """A config file, config key or command-line option holds a value that is not allowed."""


class DataError(RustsegError):
    """An input image, folder or dataset is missing, empty, unreadable or malformed."""


class ModelError(RustsegError):
    """A model file or its model card is missing, malformed or breaks the model contract."""


class SourceError(RustsegError):
    """A frame source URI is malformed, cannot be opened, or was lost for good mid-run."""

    exit_code = 3


class SinkError(RustsegError):
    """An output URI is malformed or an output could not be written."""

    exit_code = 4


class OutputStopped(SinkError):
    """An output stopped itself on purpose (the record's video at the card's free-space
    reserve). The loop drops it and goes on, whatever loop.sink_error_policy says."""


class MissingDependencyError(RustsegError):
    """An optional dependency (TensorFlow, picamera2, ...) is needed but not installed."""


def one_line(exc: BaseException) -> str:
    """An error as one line: our own errors are already one readable line; anything else is
    its type and the first line of its message (a summary, a batch index, a log line)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if isinstance(exc, RustsegError) and first:
        return first
    return f"{type(exc).__name__}: {first}".rstrip(": ")
