"""Errors raised by the data layer, so callers can tell bad data from bugs."""


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file, the row and the problem."""


class DataUnavailableError(RuntimeError):
    """The data set is neither in the given directory nor downloadable."""
