"""Alembic's environment on securedb: IAM tokens or a secret, verify-full TLS.

The database comes from ``SECUREDB_URL``, ``SECUREDB_AUTH`` (or ``SECUREDB_SECRET_ID``),
``SECUREDB_TUNNEL`` ... as everywhere else. ``alembic upgrade head`` runs on the sync
engine; ``alembic -x mode=async upgrade head`` on the async one.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

import securedb

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)


def migrate(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run_sync() -> None:
    engine = securedb.engine(securedb.Config.from_env(), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            migrate(connection)
    finally:
        engine.dispose()


async def run_async() -> None:
    engine = securedb.async_engine(securedb.Config.from_env(), poolclass=sa.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline mode writes SQL without a database: securedb is not needed")
if context.get_x_argument(as_dictionary=True).get("mode") == "async":
    asyncio.run(run_async())
else:
    run_sync()
