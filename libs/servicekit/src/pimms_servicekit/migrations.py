"""Alembic environment shared by every service: migrations run through `Database.migrate()`."""

from __future__ import annotations

from typing import Any

from alembic import context


def run_env(target_metadata: Any = None) -> None:
    """Body of a service's `migrations/env.py`."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with Database.migrate(), which provides the connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
