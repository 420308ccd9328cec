"""engine() and async_engine(): plain SQLAlchemy engines whose connections securedb opens.

The Engine and its pool are SQLAlchemy's own; securedb only supplies ``creator``, so a
checked-out connection is the driver's own and nothing wraps each query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from securedb.config import OPTIONS, Config, split_options
from securedb.connector import Connector
from securedb.errors import ConfigError

if TYPE_CHECKING:
    import sqlalchemy
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["async_engine", "engine"]

DIALECTS = {"postgresql": "postgresql+psycopg://", "mysql": "mysql+pymysql://"}
ASYNC_DIALECTS = {"postgresql": "postgresql+psycopg_async://", "mysql": "mysql+aiomysql://"}
# Pre-ping finds a connection the server or a proxy closed; recycle stays below the
# idle timeouts of RDS Proxy (30 min by default) and NAT gateways (350 s is their TCP
# idle limit, but pre-ping covers that).
ENGINE_DEFAULTS: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1500}


def engine(url: str | Config | None = None, **options: Any) -> sqlalchemy.engine.Engine:
    """A pooled SQLAlchemy Engine for `url` with verify-full TLS and managed credentials.

    Options are securedb's (see `Config`) and SQLAlchemy's ``create_engine`` keywords
    (``pool_size``, ``max_overflow``, ``pool_recycle`` ...). Defaults: pre-ping on,
    recycle after 25 minutes.

    Raises:
        ConfigError: an option is invalid or unknown to both securedb and SQLAlchemy.
        CredentialsError: a secret that must supply the endpoint could not be read.
    """
    eng: sqlalchemy.engine.Engine = _engine(url, options, is_async=False)
    return eng


def async_engine(url: str | Config | None = None, **options: Any) -> AsyncEngine:
    """`engine`'s async twin: an `AsyncEngine` on psycopg's async connection or aiomysql.

    Same options, defaults, TLS rules, failover listener and shared credential cache as
    `engine`. Each new connection takes a cached credential inline; fetching one runs in
    a thread, so the event loop never waits on AWS. With ``secret_id`` alone the secret
    names the engine, so it is read once here: call this at startup (FastAPI's
    `securedb.contrib.fastapi.Database` does, off the loop).

    Raises:
        ConfigError: an option is invalid or unknown to both securedb and SQLAlchemy.
        CredentialsError: a secret that must supply the endpoint could not be read.
    """
    eng: AsyncEngine = _engine(url, options, is_async=True)
    return eng


def _engine(url: str | Config | None, options: dict[str, Any], is_async: bool) -> Any:
    """The engine, holding its connector's credential cache until `dispose()`."""
    import sqlalchemy

    cfg, engine_options = split_options(url, options)
    connector = Connector(cfg)
    try:
        eng = _create(connector, engine_options, is_async)
    except BaseException:
        connector.close()
        raise
    # dispose() releases the credential cache; an engine used again takes it back.
    sync_engine = eng.sync_engine if is_async else eng
    sqlalchemy.event.listen(sync_engine, "engine_disposed", lambda _: connector.close())
    return eng


def _create(connector: Connector, engine_options: dict[str, Any], is_async: bool) -> Any:
    import sqlalchemy

    cfg = connector.config
    extra: dict[str, Any] = {}
    if cfg.engine == "mysql":
        from pymysql.constants import CLIENT

        extra["client_flag"] = CLIENT.FOUND_ROWS  # what the MySQL dialect asks of its driver
    create: Callable[..., Any]
    if is_async:
        from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet: async only

        create, dialects = create_async_engine, ASYNC_DIALECTS
        hook = {"async_creator": lambda: connector.connect_async(**extra)}
    else:
        create, dialects = sqlalchemy.create_engine, DIALECTS
        hook = {"creator": lambda: connector.connect(**extra)}
    try:
        eng: Any = create(
            dialects[cfg.engine or ""], **hook, **{**ENGINE_DEFAULTS, **engine_options}
        )
    except (TypeError, sqlalchemy.exc.ArgumentError) as exc:
        message = f"{exc}; securedb options are {', '.join(sorted(OPTIONS))}"
    else:
        sync_engine = eng.sync_engine if is_async else eng
        sqlalchemy.event.listen(sync_engine, "handle_error", _failover_listener(cfg.engine or ""))
        return eng
    raise ConfigError(message)


def _failover_listener(engine_name: str) -> Any:
    """Mark failover-class errors as disconnects, so SQLAlchemy invalidates the whole pool.

    SQLAlchemy's own checks only see closed or broken connections; a read-only error
    (the old writer came back as a standby) would leave "healthy" connections to it.
    """
    from securedb.failover import RETRIED, failure_of

    def on_error(context: Any) -> None:
        if failure_of(context.original_exception, engine_name) in RETRIED:
            context.is_disconnect = True

    return on_error
