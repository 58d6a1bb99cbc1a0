"""Pages of a list, as every service's list endpoint answers them."""

import pytest

from shared.api import Page, PageRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("total", "limit", "pages"), [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (5, 2, 3)]
)
def test_pages_counts_every_started_page(total, limit, pages):
    assert Page[int].of([], total=total, asked=PageRequest(1, limit)).pages == pages


@pytest.mark.parametrize(("page", "limit", "offset"), [(1, 20, 0), (2, 20, 20), (3, 7, 14)])
def test_a_page_starts_after_the_pages_before_it(page, limit, offset):
    assert PageRequest(page, limit).offset == offset
