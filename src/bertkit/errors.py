"""Errors that are the user's to fix.

Every error bertkit raises for bad input derives from BertkitError and carries a message that
names the file, the line or key, and the fix. The CLI prints such errors as one line instead of a
traceback; anything else is a bug in bertkit and keeps its traceback.
"""


class BertkitError(Exception):
    """Base class for errors caused by the user's input (files, flags, configs)."""


class ConfigError(BertkitError):
    """A config file or a config override is missing, malformed or inconsistent."""


class CheckpointError(BertkitError):
    """A checkpoint cannot be found, read or mapped onto the model."""


class DataError(BertkitError):
    """A data file is missing or has a malformed record."""
