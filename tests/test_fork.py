"""Forked children (gunicorn --preload, multiprocessing's fork) while the parent is fetching.

The parent warms its secret cache, forces a refresh, and forks while a thread of its own
is inside the refresh: the fetch is in flight, and the botocore client, its connection
pool and securedb's locks are in use. Each child must connect on its own at once: no
lock inherited held, no wait on a fetch no thread of its own will finish, no botocore
client or session of the parent's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import pytest

import securedb
from bed import postgres
from bed.bed import Bed
from securedb import _state
from securedb.config import Config
from securedb.connector import Connector
from securedb.credentials import aws
from securedb.credentials.cache import RefreshAheadCache

pytestmark = pytest.mark.bed

CHILDREN = 4
CHILD_DEADLINE = 10.0  # seconds for every child to connect, query and exit
HOLD_LIMIT = 60.0  # the parent's held call gives up waiting for its release after this


class Hold:
    """Holds the parent's call inside itself until released; a forked child passes through."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.entered, self.release = threading.Event(), threading.Event()

    def around(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            if os.getpid() == self.parent:
                self.entered.set()
                self.release.wait(HOLD_LIMIT)
            return call(*args, **kwargs)

        return held


def make_secret(bed: Bed, name: str, engine: str) -> None:
    """An RDS-managed secret for the bed's PostgreSQL or MariaDB."""
    port = bed.primary.port if engine == "postgres" else bed.mariadb.port
    fields = {
        "username": postgres.APP_USER,
        "password": postgres.APP_PASSWORD,
        "engine": engine,
        "host": "localhost" if engine == "postgres" else "127.0.0.1",
        "port": port,
        "dbname": "app",
    }
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(fields))


def cache_of(secret: str) -> RefreshAheadCache:
    """The credential cache `securedb.connect` made for `secret`."""
    caches = [c for c, _ in _state.registry.entries.values()]
    found = [c for c in caches if c.source.name == f"secret {secret!r}"]
    assert len(found) == 1
    return found[0]


def select_one(secret: str, ca: str) -> bool:
    conn = securedb.connect(secret_id=secret, ca_bundle=ca)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        return bool(cur.fetchone()[0] == 1)
    finally:
        conn.close()


def fork(child: Callable[[], bool]) -> int:
    """A child process that runs `child` and exits 0 if it returns True, else 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int, deadline: float) -> int | None:
    """The child's exit code, or None if it has not exited by `deadline` (it is killed)."""
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)  # polling; the deadline decides
    return os.waitstatus_to_exitcode(done[1])


def not_inherited(now: object, at_fork: object) -> bool:
    return at_fork is None or now is not at_fork


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
@pytest.mark.parametrize("held", ["get_secret_value", "new client"])
def test_children_connect_while_the_parent_fetches(
    bed: Bed, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, engine: str, held: str
) -> None:
    """`held`: the parent is inside GetSecretValue (its client in use, a fetch in flight), or
    is making a new client and session (securedb's client and session locks held)."""
    ca, secret = str(bed.pki.ca), f"rds/fork-{engine}-{held.replace(' ', '-')}"
    make_secret(bed, secret, engine)
    assert select_one(secret, ca)  # warm: the cache holds the secret, the client exists
    cached = cache_of(secret)
    source: Any = cached.source
    hold = Hold()
    if held == "get_secret_value":
        client = source._client
        monkeypatch.setattr(client, "get_secret_value", hold.around(client.get_secret_value))
    else:
        monkeypatch.setattr(source, "_client", None)
        monkeypatch.setattr(aws, "_session", None)
        get_session = hold.around(botocore.session.get_session)
        monkeypatch.setattr(botocore.session, "get_session", get_session)
    cached.invalidate(cached.get())  # the next get must fetch
    refreshed: list[str | None] = []

    def refresh() -> None:
        with contextlib.suppress(Exception):  # an error leaves `refreshed` empty
            refreshed.append(cached.get().version)

    refresher = threading.Thread(target=refresh)
    refresher.start()
    try:
        assert hold.entered.wait(CHILD_DEADLINE), "the parent's refresh never reached the hold"
        at_fork = (source._client, aws._session)

        def child() -> bool:
            return (
                select_one(secret, ca)
                and not_inherited(source._client, at_fork[0])
                and not_inherited(aws._session, at_fork[1])
            )

        pids = [fork(child) for _ in range(CHILDREN)]
        deadline = time.monotonic() + CHILD_DEADLINE
        codes = [exit_code(pid, deadline) for pid in pids]
    finally:
        hold.release.set()
        refresher.join(HOLD_LIMIT)
    assert codes == [0] * CHILDREN
    assert len(refreshed) == 1  # the parent's own refresh finished too


@pytest.mark.parametrize("state", ["disposed", "unresolved"])
def test_a_connector_lock_held_at_fork_is_free_in_the_child(
    bed: Bed, aws_env: dict[str, str], state: str
) -> None:
    """A thread of the parent holds a connector's own lock when the process forks: the
    child's copy must still take it, and connect.

    `disposed`: an engine after dispose(), whose next connection takes its lock to make a
    new connector. `unresolved`: a connector whose endpoint comes from an RDS-managed
    secret not read yet, so its first use takes the lock to fill the endpoint in.
    """
    ca = str(bed.pki.ca)
    if state == "disposed":
        url = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
        before = set(_state._tracked)
        eng = securedb.engine(url, ca_bundle=ca, pool_size=1)
        eng.dispose()
        made = set(_state._tracked) - before
        [owner] = [o for o in made if type(o).__name__ == "_EngineConnector"]
        close = eng.dispose

        def select() -> Any:
            with eng.connect() as conn:
                return conn.exec_driver_sql("SELECT 1").fetchone()
    else:
        make_secret(bed, "rds/fork-connector", "postgres")
        owner = Connector(Config.from_url(None, secret_id="rds/fork-connector", ca_bundle=ca))
        close = owner.close

        def select() -> Any:
            conn = owner.connect()
            try:
                return conn.execute("SELECT 1").fetchone()
            finally:
                conn.close()

    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with owner._lock:
            holding.set()
            release.wait(HOLD_LIMIT)

    holder = threading.Thread(target=hold)
    holder.start()

    def child() -> bool:
        if not owner._lock.acquire(timeout=CHILD_DEADLINE / 2):
            return False  # inherited held: it would never be released here
        owner._lock.release()
        return bool(tuple(select()) == (1,))

    try:
        assert holding.wait(CHILD_DEADLINE)
        pid = fork(child)
        code = exit_code(pid, time.monotonic() + CHILD_DEADLINE)
    finally:
        release.set()
        holder.join(HOLD_LIMIT)
        close()
    assert code == 0
