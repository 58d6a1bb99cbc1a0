"""The Alembic environment every service shares: its own schema, its own version table."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import MetaData, create_engine, pool, text


def sync_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def run_migrations(schema: str, metadata: MetaData | None = None) -> None:
    """Upgrade `schema` as the role in DATABASE_URL; the version table lives in that schema too."""
    url = context.config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"]
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text(f'SET search_path TO "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
