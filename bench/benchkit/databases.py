"""Fresh PostgreSQL databases for one run (one per service), dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN = os.environ.get(
    "PIMMS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def database_name(prefix: str, service: str) -> str:
    """`<prefix>_<service>` with dashes as underscores."""
    return f"{prefix}_{service.replace('-', '_')}"


async def create_databases(prefix: str, services: Iterable[str]) -> dict[str, str]:
    """Create one database per service; their SQLAlchemy URLs by service name."""
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    urls = {}
    try:
        async with admin.connect() as connection:
            for service in services:
                name = database_name(prefix, service)
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
                urls[service] = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.dispose()
    return urls


async def drop_databases(prefix: str, services: Iterable[str]) -> None:
    """Drop what `create_databases` made (connections still open are closed by force)."""
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            for service in services:
                name = database_name(prefix, service)
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
