"""The committed AsyncAPI documents are valid by the AsyncAPI project's own parser.

`@asyncapi/parser` (JavaScript) checks the document against the AsyncAPI 3.0 schema and the
bindings' schemas, resolves every reference and applies its rules; Node.js and the parser are
installed on first use (`switchyard/asyncapi_parser.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.asyncapi_parser import PARSER_VERSION, ParserUnavailable, validate
from switchyard.docs import ASYNCAPI
from switchyard.topology import SERVICES

pytestmark = pytest.mark.contract

DOCUMENTS = [ASYNCAPI / f"{service}.json" for service in SERVICES]


@pytest.fixture(scope="session")
def parsed() -> str:
    """One parser run over the three documents: its report, or the test fails saying why."""
    try:
        result = validate(DOCUMENTS)
    except ParserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    assert result.returncode == 0, (
        f"@asyncapi/parser {PARSER_VERSION} found errors:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_the_asyncapi_parser_finds_no_error(parsed: str, path: Path):
    assert f"{path}: 0 errors" in parsed, parsed
