"""The inbox no longer has a `payload` column: no consumer ever kept a message's body in it.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Postgres only marks the column dropped: no table rewrite, so its exclusive lock is brief.
    op.drop_column("inbox", "payload", schema="orders")


def downgrade() -> None:
    # Back as it was, nullable and empty: the rows it held were always NULL.
    op.add_column("inbox", sa.Column("payload", sa.Text), schema="orders")
