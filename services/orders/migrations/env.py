"""Alembic environment of the orders service: schema `orders`."""

from shared.migrations import run_migrations

run_migrations("orders")
