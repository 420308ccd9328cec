"""The engines, pools and connections the async cases compare (`benchmarks.cases_async`):
securedb's, the bare drivers', pools' and engines' with the same settings, and the AWS
wrapper's asyncio API. Every one verifies the server (verify-full against the bed's CA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import async_harness as aio
from benchmarks.context import Ctx

WRAPPER, WRAPPER_PLUGINS = "aws_advanced_python_wrapper", "iam,failover"
ENGINE_DEFAULTS = {"pool_pre_ping": True, "pool_recycle": 1500}  # securedb's


class Makers:
    """The engines, pools and connections the cases compare, each verify-full."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def ours(self, url: str, **options: Any) -> Callable[[], Any]:
        import securedb

        return lambda: securedb.async_engine(url, ca_bundle=self.ctx.ca, **options)

    def our_pool(self, url: str, **options: Any) -> Callable[[], Any]:
        import securedb

        return lambda: securedb.async_pool(url, ca_bundle=self.ctx.ca, **options)

    def our_connection(self, url: str, **options: Any) -> aio.Call:
        import securedb

        return lambda: securedb.async_connect(url, ca_bundle=self.ctx.ca, **options)

    def bare_pg(self) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self.ctx.pg_password_url.replace("postgresql://", "postgresql+psycopg_async://")
        args = {"sslmode": "verify-full", "sslrootcert": self.ctx.ca}
        return create_async_engine(url, connect_args=args, **ENGINE_DEFAULTS)

    def bare_my(self, scheme: str = "mysql+aiomysql://", query: str = "") -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self.ctx.my_password_url.replace("mysql://", scheme) + query
        args = {"ssl": self.ctx.aiomysql_kwargs()["ssl"]}
        return create_async_engine(url, connect_args=args, **ENGINE_DEFAULTS)

    def wrapper_my_engine(self) -> Any:
        return self.bare_my("mysql+aws_wrapper_aiomysql://", "?wrapper_plugins=failover")

    def wrapper_pg_engine(self) -> Any:
        """The AWS wrapper's async SQLAlchemy dialect for PostgreSQL, with its IAM plugin."""
        from sqlalchemy.ext.asyncio import create_async_engine

        args = self.ctx.wrapper_kwargs("iam")
        url = f"postgresql+aws_wrapper_psycopg://{args.pop('user')}@localhost:{args.pop('port')}"
        del args["host"], args["dbname"]
        return create_async_engine(f"{url}/app", connect_args=args, **ENGINE_DEFAULTS)

    def asyncpg_url(self) -> str:
        return self.ctx.pg_iam_url.replace("postgresql://", "postgresql+asyncpg://")

    def bare_asyncpg_engine(self) -> Any:
        """SQLAlchemy's asyncpg dialect with a token minted now and a verifying SSLContext."""
        from sqlalchemy.ext.asyncio import create_async_engine

        raw = self.ctx.asyncpg_kwargs()
        args = {"ssl": raw["ssl"], "password": raw["password"]}
        return create_async_engine(self.asyncpg_url(), connect_args=args, **ENGINE_DEFAULTS)

    def bare_asyncpg_pool(self) -> Any:
        import asyncpg

        return asyncpg.create_pool(**self.ctx.asyncpg_kwargs(), min_size=1, max_size=10)

    def bare_pool(self) -> Any:
        import psycopg_pool

        return psycopg_pool.AsyncConnectionPool(
            "",
            kwargs=self.ctx.pg_kwargs(iam=False),
            min_size=1,  # securedb.async_pool's defaults
            max_size=10,
            max_lifetime=1500.0,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            open=False,
        )

    async def raw_pg(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(**self.ctx.pg_kwargs())

    async def raw_my(self) -> Any:
        import aiomysql

        return await aiomysql.connect(**self.ctx.aiomysql_kwargs())

    async def wrapper_pg(self, plugins: str = WRAPPER_PLUGINS) -> Any:
        import psycopg
        from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

        kwargs = self.ctx.wrapper_kwargs(plugins)
        return await AsyncAwsWrapperConnection.connect(psycopg.AsyncConnection.connect, **kwargs)

    async def wrapper_my(self) -> Any:
        import aiomysql
        from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

        kwargs = {**self.ctx.aiomysql_kwargs(), "plugins": "failover"}
        return await AsyncAwsWrapperConnection.connect(aiomysql.connect, **kwargs)
