"""Alembic environment of the payments service: schema `payments`."""

from shared.migrations import run_migrations

run_migrations("payments")
