"""One service's database: an asyncpg pool running statements written with SQLAlchemy Core.

- `pool`: `Database`, the services' pool, and what it raises when it cannot serve;
- `statements`: `AsyncpgStatement` (a Core statement compiled once), its rows, pages of rows,
  and the parts of statements that write several tables at once (`bound`, `as_updated`);
- `errors`: what an error means for the work (a broken rule, an outage, a bug of ours);
- `engine`: SQLAlchemy's engine on the same database, for tests and scripts.
"""

from shared.db.engine import async_url, autocommit, make_engine
from shared.db.errors import (
    broken_rule,
    is_retry_later,
    is_statement_timeout,
    is_unavailable,
    violated_constraint,
)
from shared.db.pool import (
    Connection,
    ConnectionLost,
    Database,
    NoConnection,
    plain_url,
    server_settings,
)
from shared.db.statements import (
    AsyncpgStatement,
    OutsideTransaction,
    Row,
    as_updated,
    bound,
    driver,
    json_text,
    page_of,
    quoted,
)

__all__ = [
    "AsyncpgStatement",
    "Connection",
    "ConnectionLost",
    "Database",
    "NoConnection",
    "OutsideTransaction",
    "Row",
    "as_updated",
    "async_url",
    "autocommit",
    "bound",
    "broken_rule",
    "driver",
    "is_retry_later",
    "is_statement_timeout",
    "is_unavailable",
    "json_text",
    "make_engine",
    "page_of",
    "plain_url",
    "quoted",
    "server_settings",
    "violated_constraint",
]
