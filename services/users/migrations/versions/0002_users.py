"""Users, with case-insensitive unique email and lifetime stats; the outbox and inbox.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from shared.inbox import inbox_table
from shared.outbox import outbox_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("orders_paid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lifetime_spent_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("orders_paid >= 0", name="users_orders_paid_not_negative"),
        sa.CheckConstraint("lifetime_spent_cents >= 0", name="users_lifetime_spent_not_negative"),
        schema="users",
    )
    op.create_index(
        "users_email_key", "users", [sa.text("lower(email)")], unique=True, schema="users"
    )
    metadata = sa.MetaData()
    bind = op.get_bind()
    outbox_table(metadata, "users").create(bind)
    inbox_table(metadata, "users").create(bind)


def downgrade() -> None:
    op.drop_table("inbox", schema="users")
    op.drop_table("outbox", schema="users")
    op.drop_table("users", schema="users")
