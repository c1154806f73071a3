"""One exception type for every user-facing error.

The CLI prints ``RobustOFAError`` messages as a single line and exits non-zero, so each message must
name the file/field at fault and what was expected.
"""


class RobustOFAError(Exception):
    """A user-facing error with a one-line, actionable message."""
