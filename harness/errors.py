"""User-facing errors: one line saying what is wrong and what to do. The CLI prints them without a traceback."""


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name)."""


class DataError(HarnessError):
    """A dataset file is missing, corrupted or malformed."""
