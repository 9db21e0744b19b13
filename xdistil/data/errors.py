"""The one error type for bad input files."""


class InputFormatError(ValueError):
    """A malformed input line, reported as `path:line_no: message`."""

    def __init__(self, path, line_no, message):
        self.path = path
        self.line_no = line_no
        self.message = message
        super().__init__(f"{path}:{line_no}: {message}")
