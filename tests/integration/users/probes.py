"""Looking at what the users service stored, straight from the database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from users import db


async def count(engine: AsyncEngine, table: sa.Table, *where) -> int:
    """Rows of `table` matching `where`."""
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return await conn.scalar(query)


async def outbox_types(engine: AsyncEngine) -> list[str]:
    """Types of the events users owes or sent, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(db.outbox.c.type).order_by(db.outbox.c.id))
        return list(rows.scalars())
