"""Each service's OpenAPI document, fuzzed against the service itself: every check, no surprise.

Schemathesis reads the document a client would read, generates requests from it (valid ones,
invalid ones, methods no route serves) and checks each answer: its status is documented, its body
matches, a valid request is taken, an invalid one refused, `Allow` says what a path answers.
The services run for real (uvicorn, the test stack's Postgres and brokers), and schemathesis is
run exactly as a user would run it, `schemathesis run <url>/openapi.json --checks all`, with
fewer examples: its report, failures and how to reproduce each, is the assertion's message.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orders.app import create_app as create_orders
from orders.settings import OrdersSettings
from payments.app import create_app as create_payments
from payments.settings import PaymentsSettings
from tests.integration.payments.conftest import SECRET
from tests.support.servers import serving
from tests.support.services import settings_for
from users.app import create_app as create_users
from users.settings import UsersSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fuzz]

# Cases per operation in each generating phase: enough to reach each documented answer, few
# enough that the module stays within a minute. The coverage phase (boundaries, each constraint
# broken once, undocumented methods) runs in full.
EXAMPLES = 5
PHASES = "examples,coverage,fuzzing"
# What the documents cannot say (one answer a fuzzer cannot foresee), for every run of it.
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"


@pytest.fixture
async def served(stack, database, names) -> AsyncIterator[dict[str, str]]:
    """The base URL of each service, on this test's database copy and broker names."""

    def configured(cls, service: str, **overrides):
        return settings_for(cls, service, stack, database, names, **overrides)

    payments = configured(PaymentsSettings, "payments", psp_webhook_secret=SECRET)
    # Payments first: it declares the exchanges orders binds to. No consumers: only HTTP is asked.
    async with serving(create_payments(payments, consume=False)) as payments_url:
        users = configured(UsersSettings, "users")
        async with serving(create_users(users, consume=False)) as users_url:
            orders = configured(OrdersSettings, "orders", users_url=users_url, users_timeout=1.0)
            async with serving(create_orders(orders, consume=False)) as orders_url:
                yield {"users": users_url, "orders": orders_url, "payments": payments_url}


async def schemathesis_run(url: str, workdir: Path) -> tuple[int, str]:
    """`schemathesis run` on a service's document: its exit status and its report."""
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"]
    options = [
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        *options,
        "--workers",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"NO_COLOR": "1", "COLUMNS": "120"},
        cwd=workdir,  # where it keeps the cases `st replay` reads
    )
    report, _ = await process.communicate()
    return process.returncode, report.decode(errors="replace")


async def test_every_service_does_what_its_openapi_document_says(served, tmp_path):
    # A directory per service: the three runs are at once, and each writes its .schemathesis/.
    workdirs = {name: tmp_path / name for name in served}
    for workdir in workdirs.values():
        workdir.mkdir()
    runs = await asyncio.gather(
        *(schemathesis_run(url, workdirs[name]) for name, url in served.items())
    )
    failed = {name: report for name, (status, report) in zip(served, runs, strict=True) if status}
    assert not failed, "\n\n".join(f"== {name} ==\n{report}" for name, report in failed.items())
