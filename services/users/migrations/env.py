"""Alembic environment of the users service: schema `users`."""

from shared.migrations import run_migrations

run_migrations("users")
