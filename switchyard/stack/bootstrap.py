"""Create the database, the service schemas and roles, and run each service's migrations."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql

from switchyard.stack.processes import StackError

SERVICES = ("users", "orders", "payments")
SQL = Path(__file__).with_name("bootstrap.sql")
REPO = Path(__file__).resolve().parents[2]


def with_database(url: str, database: str) -> str:
    """The same URL naming another database (its options, `?sslmode=...`, kept)."""
    base, question, options = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database + question + options


def database_of(url: str) -> str:
    """The database a URL names."""
    return url.rsplit("/", 1)[1].split("?")[0]


def service_url(admin_url: str, service: str, database: str | None = None) -> str:
    """The URL a service logs in with: its own role, the shared database."""
    host = admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    database = database or database_of(admin_url)
    return f"postgresql://{service}_service:{service}-dev@{host}/{database}"


def create_database(admin_url: str, database: str, template: str | None = None) -> None:
    """CREATE DATABASE unless it exists (it cannot run inside a transaction)."""
    with psycopg.connect(with_database(admin_url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        conn.execute(stmt)


def drop_database(admin_url: str, database: str) -> None:
    with psycopg.connect(with_database(admin_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def create_schemas(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL.read_text())


def migrate(database_url: str, services: tuple[str, ...] = SERVICES) -> None:
    """`alembic upgrade head` for each service, logged in as that service's role."""
    for service in services:
        config = REPO / "services" / service / "alembic.ini"
        if not config.exists():
            continue
        alembic_config = Config(str(config))
        # ConfigParser treats % as interpolation; escape it in passwords.
        url = service_url(database_url, service).replace("%", "%%")
        alembic_config.set_main_option("sqlalchemy.url", url)
        try:
            command.upgrade(alembic_config, "head")
        except Exception as exc:
            raise StackError(f"migrations of {service} failed: {exc}") from exc


def bootstrap(database_url: str) -> None:
    """Everything a fresh server needs; running it again changes nothing."""
    create_database(database_url, database_of(database_url))
    create_schemas(database_url)
    migrate(database_url)


def fresh_template(admin_url: str, template: str) -> str:
    """`template` dropped and bootstrapped again: the database each test's copy is made from."""
    drop_database(admin_url, template)
    bootstrap(with_database(admin_url, template))
    return template
