"""The one exception family of edgewire.

    EdgewireError
    ├── ConfigError        bad flag, environment value or config file (exit 2)
    ├── SetupError         something the set-up should have installed is missing
    └── StorageError       a buffer or database that cannot be opened or written

Errors of paho, grpc, sqlite3 and friends are translated into these at the
adapter that called them. Bad *input* (a malformed payload) is never an
exception: the validator returns a dead-letter decision and a counter moves.
"""


class EdgewireError(Exception):
    """Base of every error edgewire raises on purpose."""


class ConfigError(EdgewireError):
    """A setting is wrong; the message names the field and the value."""


class SetupError(EdgewireError):
    """A required tool or file is missing; the message says how to get it."""


class StorageError(EdgewireError):
    """A buffer or database could not be opened or written."""
