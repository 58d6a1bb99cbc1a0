"""shared.db.AsyncpgStatement compiles what it can send on asyncpg as it is, and refuses the rest."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import AsyncpgStatement

pytestmark = pytest.mark.unit

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("body", JSONB),
    sa.Column("tag", sa.Text, default="new"),  # a Python-side default
)
_count = things.c.count + sa.bindparam("more", type_=sa.Integer)


def test_values_follow_the_sql_and_the_statements_own_literals_fill_the_rest():
    statement = AsyncpgStatement(
        sa.update(things)
        .where(things.c.id == sa.bindparam("target"), _count >= 0)
        .values(count=_count)
        .returning(things.c.id)
    )
    target = uuid.uuid4()
    sql, values = statement._bound({"target": target, "more": 2})
    assert sql.startswith("UPDATE things SET count=(things.count + $1::INTEGER)")
    assert values == [2, target, 0]  # `more` once for both uses, the 0 of the comparison last


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (sa.insert(things).inline(), {"id": uuid.uuid4(), "count": 1, "body": {"a": 1}}),  # JSON
        (sa.insert(things).inline(), {"id": uuid.uuid4(), "count": 1}),  # the Python default
        (sa.select(things).where(things.c.id.in_(sa.bindparam("ids", expanding=True))),
         {"ids": [uuid.uuid4()]}),  # an IN list, rendered at each call
        (sa.select(sa.cast(things.c.count, sa.Float(asdecimal=True))), {}),  # a value coming back
    ],
)  # fmt: skip
def test_what_sqlalchemy_would_do_at_each_call_is_refused(statement, params):
    with pytest.raises(TypeError, match="would have work to do at each call"):
        AsyncpgStatement(statement)._bound(params)


def test_a_parameter_left_out_is_an_error_not_a_null():
    statement = AsyncpgStatement(sa.delete(things).where(things.c.id == sa.bindparam("target")))
    with pytest.raises(TypeError, match="a value is required for \\['target'\\]"):
        statement._bound({})


def test_a_parameter_the_statement_has_no_place_for_is_an_error_not_dropped():
    statement = AsyncpgStatement(sa.delete(things).where(things.c.id == sa.bindparam("target")))
    with pytest.raises(TypeError, match="the statement has no parameter \\['tagret'\\]"):
        statement._bound({"target": uuid.uuid4(), "tagret": "typo"})


def test_each_set_of_names_has_its_own_sql():
    statement = AsyncpgStatement(sa.insert(things).inline().values(tag="x"))
    short, _ = statement._bound({"id": uuid.uuid4(), "count": 1})
    longer, _ = statement._bound({"id": uuid.uuid4(), "count": 1, "name": "n"})
    assert "name" not in short and "name" in longer
