"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class Consistent123Error(Exception):
    """Base class: the message is one line that names the file or setting and the problem."""


class InputError(Consistent123Error):
    """A bad input file (unreadable, empty, wrong size, no object...)."""


class ConfigError(Consistent123Error):
    """A bad configuration value or file."""


class ModelUnavailableError(Consistent123Error):
    """Pretrained weights are missing and cannot be downloaded here."""
