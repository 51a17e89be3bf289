"""User-facing errors: one line saying what is wrong and what to do. The CLI prints them without a traceback."""


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name)."""


class DataError(HarnessError):
    """A dataset file is missing, corrupted or malformed."""


def first_line(exc: BaseException) -> str:
    """An exception as one line for an error message: its type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
