"""The one exception type users see: the CLI prints its message as a single line, never a traceback."""


class ArrError(Exception):
    """A problem the user can fix (bad input, missing download, mismatched index...)."""
