"""Shared fixtures of servicekit's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pimms_servicekit.db import Database
from pimms_servicekit.tables import kit_metadata


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A fresh database (SQLite and PostgreSQL) with the kit tables."""
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(kit_metadata.create_all)
    yield db
    await db.dispose()
