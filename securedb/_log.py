"""securedb's loggers, all under ``securedb``.

Where records go is the application's choice: the ``securedb`` logger has a NullHandler,
so with no logging configured a retry warning is not printed on stderr by Python's
last-resort handler, and with logging configured every record still reaches the
application's handlers.
"""

from __future__ import annotations

import logging

logging.getLogger("securedb").addHandler(logging.NullHandler())


def get(name: str) -> logging.Logger:
    """The logger ``securedb.<name>``."""
    return logging.getLogger(f"securedb.{name}")
