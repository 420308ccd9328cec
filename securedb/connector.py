"""The connect path every entry point shares: credential, driver, one retry on refusal.

``Connector.connect()`` reads as its steps: take the cached credential, open the
driver's own connection with verify-full TLS, and if the database refuses the credential
(a rotated password, an expired token) fetch it once more and retry once. Failures leave
as `securedb.errors` classes that say what to do, or as a clean copy of the driver's own
error, and none of them can lead to a secret: no chained cause or context, no driver
connection attribute, no frame that holds a credential.

Credential caches are shared through one registry keyed by credential identity
(`securedb.credentials.identity`): every `Connector` (of `connect`, `engine`, `pool`,
Django, Lambda) holds a reference, and the last one released stops the refresher.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import sys
import threading
import time
import weakref
from collections.abc import Hashable, Mapping
from typing import Any

from securedb import _extras, _log, drivers, tls, topology
from securedb.config import Config, is_loopback, split_options
from securedb.credentials import RefreshAheadCache, cache_for, identity
from securedb.credentials.base import Credential
from securedb.drivers import Driver, Failure
from securedb.errors import AuthenticationError, ConfigError, SecureDBError, TLSError, TopologyError
from securedb.topology import Missed, Outcome, Pause, Plan, Reached, Topology, Visit

__all__ = ["Connector", "async_connect", "connect"]

logger = _log.get("connect")


class _Registry:
    """One credential cache per identity, counted; the last release closes it.

    Releases come from finalizers, and the garbage collector runs those wherever it
    starts, including inside `acquire` on the thread that holds the lock. So a release
    never waits for the lock: it is queued, and whoever holds the lock settles the queue
    after letting go.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[Hashable, tuple[RefreshAheadCache, int]] = {}
        self.pending: collections.deque[tuple[Hashable, RefreshAheadCache]] = collections.deque()

    def acquire(self, cfg: Config) -> tuple[Hashable, RefreshAheadCache]:
        key = identity(cfg)
        with self.lock:
            cache, count = self.entries.get(key) or (cache_for(cfg), 0)
            self.entries[key] = (cache, count + 1)
        self.settle()
        return key, cache

    def release(self, key: Hashable, acquired: RefreshAheadCache) -> None:
        self.pending.append((key, acquired))
        self.settle()

    def settle(self) -> None:
        """Apply the queued releases, unless another holds the lock (it settles them)."""
        while self.pending:
            if not self.lock.acquire(blocking=False):
                return
            closing: list[RefreshAheadCache] = []
            try:
                while self.pending:
                    key, acquired = self.pending.popleft()
                    cache, count = self.entries.get(key, (None, 0))
                    if cache is not acquired:  # reset() forgot that one: not ours
                        continue
                    if count > 1:
                        self.entries[key] = (cache, count - 1)
                    else:
                        del self.entries[key]
                        closing.append(cache)
            finally:
                self.lock.release()
            for cache in closing:
                cache.close()

    def reset(self) -> None:
        with self.lock:
            caches = [cache for cache, _ in self.entries.values()]
            self.entries.clear()
            self.pending.clear()
        self.settle()
        for cache in caches:
            cache.close()


_registry = _Registry()


class Connector:
    """Opens connections for one `Config`, with the shared credential cache of its identity.

    `close()` releases the cache (and so does garbage collection); a connector used
    again after `close()` takes a new reference.
    """

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._resolved = cfg if cfg.engine and cfg.host else None
        self._by_dbname: dict[str, Config] = {}
        self._by_host: dict[tuple[str | None, str], Config] = {}
        self._topology: Topology | None = None
        self._lock = threading.Lock()
        _connectors.add(self)
        self._acquire()

    def _acquire(self) -> None:
        key, self._cache = _registry.acquire(self._cfg)
        self._held: dict[Hashable, RefreshAheadCache] = {key: self._cache}
        self._release = weakref.finalize(self, _release_all, self._held)

    @property
    def cache(self) -> RefreshAheadCache:
        self._take_back()
        return self._cache

    def _take_back(self) -> None:
        """After `close()`, a connector used again takes its cache back."""
        if not self._release.alive:
            with self._lock:
                if not self._release.alive:
                    self._acquire()

    def _cache_for(self, cfg: Config) -> RefreshAheadCache:
        """The credential cache for `cfg`: the connector's own, or for an Aurora instance
        (another host) the one of its identity, since a token is signed for one host."""
        if cfg.host == (self._resolved or self._cfg).host:
            return self.cache
        self._take_back()
        key = identity(cfg)
        with self._lock:
            if key not in self._held:
                self._held[key] = _registry.acquire(cfg)[1]
            return self._held[key]

    @property
    def config(self) -> Config:
        """The configuration with the endpoint filled in (from an RDS secret if need be).

        Raises:
            CredentialsError: the secret that must name the endpoint could not be read.
        """
        if self._resolved is not None:
            return self._resolved
        try:
            cred = self.cache.get()
        except SecureDBError as exc:
            error = _detached(exc)
        else:
            return self._resolve(cred)
        raise error  # outside the except block: no context to follow

    def _resolve(self, cred: Credential) -> Config:
        with self._lock:
            if self._resolved is None:
                self._resolved = self._cfg.with_secret_fields(
                    {**cred.fields, "username": cred.user}
                )
            return self._resolved

    def connect(self, dbname: str | None = None, **args: Any) -> Any:
        """A new driver connection, verified TLS, credentials retried once if refused.

        `dbname` and `args` (driver keyword arguments) are this connection's own; they
        go through the adapter's merge point like ``connect_args``.
        """
        outcome = self._open(dbname, args)
        if isinstance(outcome, BaseException):
            try:
                raise outcome  # here, outside any except block: no __context__ to follow
            finally:
                del outcome  # no cycle through this frame: the connector goes when unused
        return outcome

    async def connect_async(self, dbname: str | None = None, **args: Any) -> Any:
        """`connect`'s twin: the driver's async connection; credential work off the loop."""
        outcome = await self._open_async(dbname, args)
        if isinstance(outcome, BaseException):
            try:
                raise outcome
            finally:
                del outcome
        return outcome

    def _open(self, dbname: str | None, args: Mapping[str, Any]) -> Any:
        """A connection, or the clean error to raise."""
        try:
            cfg = self._for_dbname(self.config, dbname)
        except SecureDBError as exc:
            return _detached(exc)
        driver = drivers.load(cfg.engine or "", cfg.driver)
        absent = _extras.missing("securedb.connect()", _extras.driver_modules(cfg.engine, False))
        if absent is not None:
            return absent
        cluster = self._topology_of(cfg)
        if cluster is None:
            return self._reach(driver, cfg, args)
        return self._routed(driver, cfg, args, self._plan(cfg, cluster))

    def _reach(self, driver: Driver, cfg: Config, args: Mapping[str, Any]) -> Any:
        """A connection to `cfg`'s host, or the clean error to raise."""
        outcome = self._attempt(driver, cfg, args, retry=True)
        if outcome is _RETRY:
            outcome = self._attempt(driver, cfg, args, retry=False)
        return outcome

    def _routed(self, driver: Driver, cfg: Config, args: Mapping[str, Any], plan: Plan) -> Any:
        """Carry out a topology plan: the connection it chose, or the clean error."""
        opened: list[Any] = []
        chosen = None
        outcome: Outcome = None
        try:
            while True:
                step = plan.send(outcome)
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    outcome = None
                    continue
                outcome = self._visit(driver, cfg, args, step)
                if isinstance(outcome, Reached):
                    opened.append(outcome.conn)
        except StopIteration as done:
            chosen = done.value
            return chosen
        except Exception as exc:
            return _bare(exc)
        finally:
            for conn in opened:
                if conn is not chosen:
                    _close_quietly(conn)

    def _visit(self, driver: Driver, cfg: Config, args: Mapping[str, Any], visit: Visit) -> Outcome:
        target = self._for_host(cfg, visit.host)
        conn = self._reach(driver, target, args)
        if isinstance(conn, BaseException):
            return Missed(conn, driver.classify(conn) is Failure.FAILOVER)
        if not visit.read:
            return Reached(conn, None)
        try:
            answer = driver.read_topology(conn)
        except Exception as exc:
            return _unread(exc, driver, target, conn)
        return self._answered(answer, visit.host, conn)

    async def _open_async(self, dbname: str | None, args: Mapping[str, Any]) -> Any:
        try:
            cfg = self._for_dbname(self._resolved or await self._config_async(), dbname)
        except SecureDBError as exc:
            return _detached(exc)
        driver = drivers.load(cfg.engine or "", cfg.driver)
        modules = _extras.driver_modules(cfg.engine, True, cfg.driver)
        if any(sys.modules.get(name) is None for name in modules):
            # the first import of a driver takes hundreds of ms: not on the loop
            absent = await asyncio.to_thread(_extras.missing, "securedb.async_connect()", modules)
            if absent is not None:
                return absent
        cluster = self._topology_of(cfg)
        if cluster is None:
            return await self._reach_async(driver, cfg, args)
        return await self._routed_async(driver, cfg, args, self._plan(cfg, cluster))

    async def _reach_async(self, driver: Driver, cfg: Config, args: Mapping[str, Any]) -> Any:
        outcome = await self._attempt_async(driver, cfg, args, retry=True)
        if outcome is _RETRY:
            outcome = await self._attempt_async(driver, cfg, args, retry=False)
        return outcome

    async def _routed_async(
        self, driver: Driver, cfg: Config, args: Mapping[str, Any], plan: Plan
    ) -> Any:
        opened: list[Any] = []
        chosen = None
        outcome: Outcome = None
        try:
            while True:
                step = plan.send(outcome)
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    outcome = None
                    continue
                outcome = await self._visit_async(driver, cfg, args, step)
                if isinstance(outcome, Reached):
                    opened.append(outcome.conn)
        except StopIteration as done:
            chosen = done.value
            return chosen
        except Exception as exc:
            return _bare(exc)
        finally:
            for conn in opened:
                if conn is not chosen:
                    await _close_quietly_async(conn)

    async def _visit_async(
        self, driver: Driver, cfg: Config, args: Mapping[str, Any], visit: Visit
    ) -> Outcome:
        target = self._for_host(cfg, visit.host)
        conn = await self._reach_async(driver, target, args)
        if isinstance(conn, BaseException):
            return Missed(conn, driver.classify(conn) is Failure.FAILOVER)
        if not visit.read:
            return Reached(conn, None)
        try:
            answer = await driver.read_topology_async(conn)
        except Exception as exc:
            return _unread(exc, driver, target, conn)
        return self._answered(answer, visit.host, conn)

    def _answered(self, answer: topology.Answer | None, where: str, conn: Any) -> Reached:
        """What a topology read came to: a snapshot, a lie, or no topology at all (not
        Aurora: this cluster's connections go by DNS from now on)."""
        assert self._topology is not None
        if answer is None:
            self._topology.dns_only = True
            return Reached(conn, None)
        try:
            return Reached(conn, topology.snapshot(answer, self._topology.cluster, where))
        except TopologyError as exc:
            return Reached(conn, None, exc)

    def _topology_of(self, cfg: Config) -> Topology | None:
        """The shared topology of `cfg`'s Aurora cluster, if its connections are routed."""
        if self._topology is None:
            cluster = cfg.cluster
            if cluster is None:
                return None
            self._topology = topology.shared(cfg.engine or "", cluster)
        return None if self._topology.dns_only else self._topology

    def _plan(self, cfg: Config, cluster: Topology) -> Plan:
        host = cfg.host or ""
        if cfg.wants_reader:
            return topology.reader_plan(
                cluster, host, cfg.max_lag, cfg.reader_fallback, cfg.connect_timeout
            )
        return topology.writer_plan(cluster, host, cfg.connect_timeout)

    def _for_host(self, cfg: Config, host: str) -> Config:
        """`cfg` for one instance of its cluster: TLS verifies, and a token signs, that name."""
        if host == cfg.host:
            return cfg
        key = (cfg.dbname, host)
        if key not in self._by_host:
            # An instance endpoint is not routed: the role was the cluster endpoint's.
            self._by_host[key] = dataclasses.replace(cfg, host=host, role=None)
        return self._by_host[key]

    def failed_over(self) -> None:
        """A failover-class error was seen on a connection: for an Aurora cluster, the
        next connection looks for the writer again."""
        if self._topology is not None and not self._topology.dns_only:
            self._topology.failed_over()

    def _attempt(self, driver: Driver, cfg: Config, args: Mapping[str, Any], retry: bool) -> Any:
        """A connection, `_RETRY` after a first refusal, or the clean error to raise."""
        cache = self._cache_for(cfg)
        try:
            cred = cache.get()
        except SecureDBError as exc:
            return _detached(exc)
        try:
            return driver.connect(cfg, cred, args)
        except Exception as exc:
            return self._refused(driver, cfg, cred, exc, retry)

    async def _attempt_async(
        self, driver: Driver, cfg: Config, args: Mapping[str, Any], retry: bool
    ) -> Any:
        try:
            cred = await self._credential_async(self._cache_for(cfg))
        except SecureDBError as exc:
            return _detached(exc)
        try:
            return await driver.connect_async(cfg, cred, args)
        except Exception as exc:
            return self._refused(driver, cfg, cred, exc, retry)

    def _refused(
        self, driver: Driver, cfg: Config, cred: Credential, exc: Exception, retry: bool
    ) -> Any:
        """`_RETRY` for a first refusal of a managed credential, else the error to raise."""
        failure = driver.classify(exc)
        managed = cfg.auth != "password"
        cache = self._cache_for(cfg)
        if failure is Failure.AUTH and retry and managed and cache.invalidate(cred):
            logger.info(
                "%s refused %s (version %s); refreshing once",
                cfg.endpoint,
                cache.source.name,
                cred.version,
            )
            return _RETRY
        return _translate(exc, failure, cfg, cred.password)

    async def credential_async(self) -> Credential:
        """The cached credential inline; a fetch (and botocore's import) in a thread.

        Tasks and threads share the cache's single in-flight fetch.
        """
        return await self._credential_async(self.cache)

    @staticmethod
    async def _credential_async(cache: RefreshAheadCache) -> Credential:
        value = cache.get_cached()
        if value is None:
            value = await asyncio.to_thread(cache.get)
        return value

    async def _config_async(self) -> Config:
        return self._resolve(await self.credential_async())

    def _for_dbname(self, cfg: Config, dbname: str | None) -> Config:
        if dbname is None or dbname == cfg.dbname:
            return cfg
        if dbname not in self._by_dbname:
            self._by_dbname[dbname] = Config(**{**_fields(cfg), "dbname": dbname})
        return self._by_dbname[dbname]

    def close(self) -> None:
        """Release the credential cache; the last release stops its refresher."""
        self._release()

    def __repr__(self) -> str:
        return f"<Connector {self._cfg.endpoint} auth={self._cfg.auth}>"


_RETRY = object()
_connectors: weakref.WeakSet[Connector] = weakref.WeakSet()  # for their locks after a fork


def _release_all(held: dict[Hashable, RefreshAheadCache]) -> None:
    for key, cache in held.items():
        _registry.release(key, cache)
    held.clear()


def _bare(exc: Exception) -> Exception:
    """`exc` (clean already) without the traceback through a plan, whose frames hold
    connections."""
    exc.__cause__ = exc.__context__ = None
    return exc.with_traceback(None)


def _unread(exc: Exception, driver: Driver, cfg: Config, conn: Any) -> Outcome:
    """The topology query failed: the connection was lost, or this is not Aurora."""
    _close_quietly(conn)
    failure = driver.classify(exc)
    if failure is Failure.FAILOVER:
        return Missed(_translate(exc, failure, cfg, ""), True)
    error = TopologyError(
        f"could not read the Aurora topology on {cfg.endpoint} ({type(exc).__name__}); "
        "pass topology='off' to connect through the endpoint's DNS name only",
        host=cfg.host,
        port=cfg.port,
    )
    return Missed(error, False)


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


async def _close_quietly_async(conn: Any) -> None:
    with contextlib.suppress(Exception):
        result = conn.close()
        if asyncio.iscoroutine(result):
            await result


def _fields(cfg: Config) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


class _Memo:
    """`connect()`'s connectors by the caller's arguments, the least recently used dropped."""

    SIZE = 64

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connectors: collections.OrderedDict[Hashable, Connector] = collections.OrderedDict()

    def get(self, key: Hashable, url: str | Config | None, options: dict[str, Any]) -> Connector:
        with self.lock:
            connector = self.connectors.get(key)
            if connector is not None:
                self.connectors.move_to_end(key)
                return connector
        cfg, unknown = split_options(url, options)
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(sorted(unknown))}; "
                "pass driver arguments in connect_args="
            )
        connector = Connector(cfg)
        with self.lock:
            connector = self.connectors.setdefault(key, connector)
            full = len(self.connectors) > self.SIZE
            evicted = self.connectors.popitem(last=False)[1] if full else None
        if evicted is not None:
            evicted.close()
        return connector


_memo = _Memo()


def reset() -> None:
    """Close every credential cache and forget `connect()`'s connectors.

    For tests and benchmarks only, so that nothing one of them made is left for the
    next: an engine or pool still in use keeps working, but shares no cache any more.
    """
    with _memo.lock:
        connectors = list(_memo.connectors.values())
        _memo.connectors.clear()
    for connector in connectors:
        connector.close()
    _registry.reset()
    topology.forget()


async def async_connect(url: str | Config | None = None, **options: Any) -> Any:
    """`connect`'s async twin: psycopg's ``AsyncConnection`` or an aiomysql connection.

    A cached credential is used inline; fetching one (a secret, AWS credentials from
    IMDS, the container endpoint or STS, and the first import of botocore) runs in a
    thread, so the event loop never waits on it.

    It raises the same errors as `connect`.
    """
    return await _memo.get((url, repr(sorted(options.items()))), url, options).connect_async()


def connect(url: str | Config | None = None, **options: Any) -> Any:
    """The driver's own connection (psycopg or PyMySQL), verify-full TLS, managed credentials.

    Calls for the same credential identity share one credential cache, so a token or
    secret is not fetched again for every call.

    Raises:
        ConfigError: an option is invalid.
        CredentialsError: no AWS credentials, or the secret cannot be read or parsed.
        TLSError: the server's certificate is not trusted or does not name the host.
        AuthenticationError: the database refused the credentials after one refresh.
        ModuleNotFoundError: the driver is not installed; the message names the extra
            (``pip install 'securedb[postgresql]'``).
    """
    # A repeated call skips parsing altogether; equal Configs are one key.
    return _memo.get((url, repr(sorted(options.items()))), url, options).connect()


def _translate(exc: Exception, failure: Failure | None, cfg: Config, secret: str) -> Exception:
    """The error to raise for a driver failure, holding nothing that leads to `secret`.

    securedb's own errors lose their traceback (its frames hold the driver's arguments);
    others become a securedb error, or a fresh copy of the driver's error made of its
    cleaned message alone (no ``pgconn``, no cause), so SQLAlchemy and psycopg_pool still
    recognise a lost connection.
    """
    if isinstance(exc, SecureDBError):
        return _detached(exc)
    words = _server_words(exc, secret)
    if failure is Failure.AUTH:
        return AuthenticationError(
            f"{cfg.endpoint} refused the {AUTH_WORDS[cfg.auth]}"
            + (" even after fetching it again" if cfg.auth != "password" else "")
            + f" (the server said: {words}); {AUTH_HINTS[cfg.auth]}",
            host=cfg.host,
            port=cfg.port,
        )
    if failure is Failure.TLS:
        # aiomysql keeps the ssl error's words in the cause only.
        reason = f"{exc} {exc.__cause__ or ''}"
        return TLSError(_tls_message(reason, cfg), host=cfg.host, port=cfg.port)
    args = tuple(_clean(a, secret) if isinstance(a, str) else a for a in exc.args)
    return type(exc)(*args)


def _detached(exc: SecureDBError) -> SecureDBError:
    """`exc` without the traceback, cause and context it had inside securedb."""
    exc.__cause__ = exc.__context__ = None
    return exc.with_traceback(None)


def _server_words(exc: Exception, secret: str) -> str:
    """What the server said (``PAM authentication failed for user "app"``), cleaned."""
    args = exc.args
    text = str(args[1]) if len(args) > 1 and isinstance(args[0], int) else str(exc)
    return _clean(text.rsplit("FATAL:", 1)[-1].strip(), secret)[:300]


def _clean(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


AUTH_WORDS = {"iam": "IAM token", "secret": "secret's password", "password": "password"}
AUTH_HINTS = {
    "iam": "check that IAM authentication is enabled on the instance, that the database user "
    "has the rds_iam role (PostgreSQL) or the AWSAuthenticationPlugin (MySQL), and that "
    "the caller's policy allows rds-db:connect for this user",
    "secret": "check that the secret's username and password match the database (a rotation "
    "may have failed)",
    "password": "check the user and password",
}


def _tls_message(reason: str, cfg: Config) -> str:
    where = f"{cfg.host}:{cfg.port}"
    if "match" in reason or "mismatch" in reason:
        if is_loopback(cfg.host):
            return (
                f"the certificate of {where} does not name {cfg.host}: the server's "
                "certificate names the real endpoint, so connect to that name and send "
                "the socket to the local forward with tunnel='127.0.0.1:PORT'"
            )
        return (
            f"the certificate of {where} does not name {cfg.host}; connect with the RDS "
            "endpoint name (a CNAME of your own is not in the certificate), or use "
            "tunnel= for a port forward"
        )
    if "verify failed" in reason or "certificate" in reason:
        return (
            f"the certificate of {where} is not trusted by {tls.ca_file(cfg)}; for RDS the "
            "bundled RDS CA should chain, unless the endpoint's region is newer than the "
            "bundled snapshot: then pass ca_bundle= with AWS's current global-bundle.pem, "
            "or run `securedb ca refresh` and pass ca_bundle= with the rds-ca-bundle.pem it "
            "writes; for a server of your own, pass ca_bundle= with its CA"
        )
    return (
        f"TLS to {where} failed: the server did not complete a verified TLS handshake "
        "(does it offer TLS?); securedb never connects without verified TLS"
    )


def _after_fork_in_child() -> None:
    """A lock held by another thread at fork would never be released in the child."""
    _registry.lock = threading.Lock()
    _memo.lock = threading.Lock()
    for connector in list(_connectors):
        connector._lock = threading.Lock()
    topology.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
