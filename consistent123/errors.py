"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class Consistent123Error(Exception):
    """Base class: the message is one line that names the file or setting and the problem."""


class InputError(Consistent123Error):
    """A bad input file (unreadable, empty, wrong size, no object...)."""


class ConfigError(Consistent123Error):
    """A bad configuration value or file."""


class ModelUnavailableError(Consistent123Error):
    """Pretrained weights are missing and cannot be downloaded here."""


class OutputError(Consistent123Error):
    """An output that cannot be written (read-only folder, full disk, no permission)."""


class BusyError(Consistent123Error):
    """An output folder another live process is writing (its lock is held)."""


class TrackingError(Consistent123Error):
    """The MLflow tracking store is missing, unreachable or refuses a write."""
