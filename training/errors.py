"""Errors a training run reports to the user (kept import-light so the CLI answers fast)."""


class DatasetError(ValueError):
    """The data file is missing, unreadable or not in the penguins_size.csv layout."""


class OutputError(ValueError):
    """The output directory cannot be written or replaced safely."""


class ParityError(RuntimeError):
    """A compiled model disagrees with its scikit-learn pipeline."""
