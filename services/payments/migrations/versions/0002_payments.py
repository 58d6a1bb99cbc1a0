"""Payments (one per order), the provider's webhooks by webhook-id; the outbox and inbox.

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

STATUSES = (
    "awaiting_confirmation",
    "succeeded",
    "failed",
    "amount_mismatch",
    "refund_pending",
    "refunded",
)


def _timestamp(name: str, **kwargs) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


def upgrade() -> None:
    now = {"nullable": False, "server_default": sa.func.now()}
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("provider_payment_id", sa.Text),
        sa.Column("failure_reason", sa.Text),
        sa.Column("correlation_id", sa.Text, nullable=False),
        _timestamp("created_at", **now),
        _timestamp("updated_at", **now),
        sa.UniqueConstraint("order_id", name="payments_order_id_key"),
        sa.CheckConstraint("amount_cents >= 0", name="payments_amount_not_negative"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="payments_status"
        ),
        schema="payments",
    )
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text),
        _timestamp("received_at", **now),
        _timestamp("processed_at"),
        sa.CheckConstraint("state IN ('pending', 'applied', 'ignored')", name="webhooks_state"),
        schema="payments",
    )
    # The command handler looks up the webhooks that wait for its order.
    op.create_index(
        "webhooks_pending",
        "webhooks",
        ["order_id", "seq"],
        schema="payments",
        postgresql_where=sa.text("state = 'pending'"),
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
        schema="payments",
    )
    # The relay only ever scans unsent rows in id order.
    op.create_index(
        "outbox_unsent",
        "outbox",
        ["id"],
        schema="payments",
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
        sa.Column("payload", sa.Text),  # never written; revision 0004 drops it
        schema="payments",
    )


def downgrade() -> None:
    op.drop_table("inbox", schema="payments")
    op.drop_table("outbox", schema="payments")
    op.drop_table("webhooks", schema="payments")
    op.drop_table("payments", schema="payments")
