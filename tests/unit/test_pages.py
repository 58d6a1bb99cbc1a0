"""Pages of a list, as every service's list endpoint answers them."""

import pytest

from shared.api import Page

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("total", "limit", "pages"), [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (5, 2, 3)]
)
def test_pages_counts_every_started_page(total, limit, pages):
    assert Page[int].of([], total=total, page=1, limit=limit).pages == pages
