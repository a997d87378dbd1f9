"""Expected failures: one line that names the input and the fix.

The CLI shows a `MilError` as one red line (exit code 2); anything else is a bug and keeps its traceback.
"""


class MilError(Exception):
    """An expected failure the user can fix; `str(err)` is the whole message."""


class InputError(MilError):
    """Bad input: a file, folder, argument or table the run cannot use."""


class ConfigError(MilError):
    """A configuration value or file that does not validate."""


class SlideError(MilError):
    """One slide cannot be opened or read. Extraction records it and goes on with the next slide."""

    def __init__(self, slide: str, message: str):
        super().__init__(f"{slide}: {message}")
        self.slide = slide


class StoreError(MilError):
    """A bag store that is missing, incompatible (another encoder) or corrupt."""
