"""One exception type for every user-facing error.

The CLI prints a HarnessError's message without a traceback and exits with status 2; anything else is a
bug and keeps its traceback. Messages must name the file, key or value at fault.
"""


class HarnessError(Exception):
    """An error caused by input the user can fix (a file, a key, a value, a missing build)."""
