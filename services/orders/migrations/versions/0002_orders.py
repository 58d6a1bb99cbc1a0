"""Orders, their idempotency keys and history; the outbox and inbox.

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

STATUSES = "'pending_payment', 'paid', 'payment_failed', 'cancelled', 'refunded'"


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("items", JSONB, nullable=False),
        sa.Column("payment_id", sa.Text),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("refund_requested_at", sa.DateTime(timezone=True)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="orders_status"),
        sa.CheckConstraint("total_cents >= 0", name="orders_total_not_negative"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="orders_currency_code"),
        schema="orders",
    )
    op.create_index("ix_orders_orders_user_id", "orders", ["user_id"], schema="orders")
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("order_id", sa.Uuid, sa.ForeignKey("orders.orders.id"), nullable=False),
        _timestamp("created_at"),
        schema="orders",
    )
    op.create_table(
        "order_history",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        _timestamp("recorded_at"),
        schema="orders",
    )
    op.create_index(
        "ix_orders_order_history_order_id", "order_history", ["order_id"], schema="orders"
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
        schema="orders",
    )
    # The relay only ever scans unsent rows in id order.
    op.create_index(
        "outbox_unsent",
        "outbox",
        ["id"],
        schema="orders",
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
        schema="orders",
    )


def downgrade() -> None:
    for table in ("inbox", "outbox", "order_history", "idempotency_keys", "orders"):
        op.drop_table(table, schema="orders")
