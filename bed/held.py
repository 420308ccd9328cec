"""One bed held for every test session of a process, for runs made of many short sessions.

A mutation run (`make mutate`) starts a new pytest session for each mutant, in a process
forked from the one that ran the whole selection first. Starting a bed per session would
cost seconds each time, so `scripts/mutate.py` starts one with `hold()` in that first
process and sets ``SECUREDB_TEST_BED=held``; the `bed` fixture then hands every session
the held bed (`borrowed()`) and neither starts nor stops one. The holder stops it when
`hold()` exits (and `Bed.start` registered the same stop with atexit); a forked child
leaves through `os._exit` and stops nothing.

Only tests that leave every server running may share a held bed: a server that a forked
child stopped and started again would be the child's, outliving it unseen by the holder.
The mutation run's test selection (``[tool.mutmut]`` in pyproject.toml) leaves out the
tests that stop, promote or rebuild servers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from bed.bed import Bed

ENV = "SECUREDB_TEST_BED"
HELD = "held"

_held: Bed | None = None


@contextlib.contextmanager
def hold(make: type[Bed] = Bed) -> Iterator[Bed]:
    """Start a bed that `borrowed()` hands out in this process and its forks; stop it after."""
    global _held
    previous = os.environ.get(ENV)
    with make() as started:
        _held = started
        os.environ[ENV] = HELD
        try:
            yield started
        finally:
            _held = None
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous


def borrowed() -> Bed | None:
    """The held bed if ``SECUREDB_TEST_BED=held``, else None (the fixture starts its own).

    Raises:
        RuntimeError: the variable says held, but no bed is held by this process.
    """
    if os.environ.get(ENV) != HELD:
        return None
    if _held is None:
        raise RuntimeError(
            f"{ENV}={HELD} but this process holds no bed; it is set by `make mutate` "
            f"(scripts/mutate.py) for its own test sessions: unset {ENV} to start a bed"
        )
    return _held
