"""The one error type that commands turn into a one-line message and exit status 2."""


class EmpoError(Exception):
    """A user-facing error: bad input, missing file, misspelt name.

    The message names the file, key or value at fault and what was expected.
    """
