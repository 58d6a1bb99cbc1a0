"""Users, with case-insensitive unique email and lifetime stats; the outbox and inbox.

Revision ID: 0002
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = None
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
    _create_outbox_and_inbox()


def _create_outbox_and_inbox() -> None:
    """The outbox and inbox as they were at this revision, spelled out here on purpose.

    A migration is history: building these from the live table definitions would let a later
    edit to those definitions change what this revision creates on a fresh database.
    """
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("broker", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("routing_key", sa.Text),
        sa.Column("key", sa.Text),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("broker IN ('kafka', 'rabbit')", name="outbox_broker"),
        schema="users",
    )
    # The relay only ever scans unsent rows in id order.
    op.create_index(
        "outbox_unsent",
        "outbox",
        ["id"],
        schema="users",
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("payload", sa.Text),  # never written; revision 0003 drops it
        schema="users",
    )


def downgrade() -> None:
    op.drop_table("inbox", schema="users")
    op.drop_table("outbox", schema="users")
    op.drop_table("users", schema="users")
