"""One adapter per driver, all of the same shape."""
