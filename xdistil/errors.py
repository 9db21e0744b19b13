"""Errors a user can fix, each naming where the problem is: a flag, a file and line, or a directory.

The entry scripts report them as `error: <what> (<where>)`, without a traceback (see `xdistil.cli`).
"""
from __future__ import annotations


class XdistilError(Exception):
    """A problem with the user's input or settings. `what` says what is wrong, `where` where it is."""

    def __init__(self, what: str, where: str | None = None):
        self.what = what
        self.where = where
        super().__init__(f"{what} ({where})" if where else what)


class ConfigError(XdistilError, ValueError):
    """A flag (or setting) with a value that cannot work; `flag` is its command-line name."""

    def __init__(self, flag: str, message: str):
        self.flag = flag if flag.startswith("--") else f"--{flag}"
        super().__init__(message, self.flag)


class InputFormatError(XdistilError, ValueError):
    """A malformed line of an input file; str() is `path:line_no: message`."""

    def __init__(self, path, line_no: int, message: str):
        self.path = path
        self.line_no = line_no
        self.message = message
        XdistilError.__init__(self, message, f"{path}:{line_no}")

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.message}"


class InputFileError(XdistilError, ValueError):
    """A whole input file that cannot be used (missing, empty, no labels); names the file."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(message, str(path))


class ModelDirectoryError(XdistilError):
    """A model directory (or one of its files) that is missing, broken, or made for other settings."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(message, str(path))
