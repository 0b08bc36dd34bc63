"""User-facing errors.

Every defect in user input (a trace, a hardware file, a command-line argument) raises a subclass of
:class:`AccelsimError` whose message is a single line naming the file and the problem. The CLI turns
these into one line on stderr and exit status 2; nothing else is caught, so real bugs still show a
traceback.
"""


class AccelsimError(Exception):
    """Bad user input: printed as one line, exit status 2."""

    def __init__(self, message: str):
        # Keep messages to one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class TraceError(AccelsimError):
    """A trace file that is missing, corrupt, truncated, of an unknown version or inconsistent."""


class HardwareConfigError(AccelsimError):
    """A hardware YAML file with unknown keys, impossible values or bad units."""


class UnsupportedError(AccelsimError):
    """A request the tool cannot honour (e.g. an op kind no model handles)."""
