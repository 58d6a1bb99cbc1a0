"""`make up` after a server crashed restarts that server only, and the services carry on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.client import SwitchyardClient
from switchyard.stack.native import NativeStack
from switchyard.stack.processes import port_is_free
from switchyard.stack.services import SERVICES, ServiceProcess

# A whole `make up` from nothing, then a crash and another `make up`: more than a unit's minute.
pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]

SWITCHYARD = Path(sys.executable).with_name("switchyard")


@pytest.fixture(scope="module")
def made_up() -> Iterator[tuple[dict[str, str], Path]]:
    """A stack started by `switchyard stack up` (what `make up` runs) in a directory of its own."""
    taken = [s.port for s in SERVICES if not port_is_free(s.port)]
    if taken:
        pytest.skip(f"ports {taken} are in use (a `make up` stack?): this test starts its own")
    state = Path(tempfile.mkdtemp(prefix="switchyard-make-up-"))
    state.chmod(0o755)
    env = {**os.environ, "SWITCHYARD_STATE_DIR": str(state), "STACK": "native", "COLUMNS": "200"}
    try:
        _stack("up", env)
        yield env, state
    finally:
        _stack("down", env, check=False)
        shutil.rmtree(state, ignore_errors=True)


def _stack(command: str, env: dict[str, str], *, check: bool = True) -> str:
    result = subprocess.run([str(SWITCHYARD), "stack", command], env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    if check:
        assert result.returncode == 0, output
    return output


def _pids(state: Path) -> dict[str, int | None]:
    servers = {name: s.server_pid() for name, s in NativeStack(state).servers.items()}
    return servers | {s.name: ServiceProcess(state, s).pid() for s in SERVICES}


@pytest.mark.parametrize("server", ["postgres", "kafka", "rabbitmq"])
async def test_make_up_restarts_only_the_crashed_server_and_the_services_carry_on(made_up, server):
    env, state = made_up
    shop = SwitchyardClient()
    try:
        user = await shop.create_user()
        order = await shop.place_order(user["id"])
        await shop.wait_for(lambda: shop.payments_for(order["id"]), bool)
        before = _pids(state)

        NativeStack(state).crash(server)
        status = _stack("status", env, check=False)  # a row that says so, never a crash
        rows = {line.split()[1]: line for line in status.splitlines() if line.startswith("│ ")}
        assert "down" in rows[server], status
        others = [name for name in NativeStack(state).servers if name != server]
        assert all("healthy" in rows[name] for name in others), status
        _stack("up", env)
        status = _stack("status", env)  # every server healthy again, and the lag read from Kafka
        assert "orders <- users.events" in status and "users <- orders.events" in status, status

        after = _pids(state)
        assert after[server] != before[server]
        assert {k: v for k, v in after.items() if k != server} == {
            k: v for k, v in before.items() if k != server
        }
        # Producers, consumers and pools found the server again by themselves.
        response = await shop.http.delete(f"{shop.urls.users}/api/v1/users/{user['id']}")
        assert response.status_code == 204, response.text
        await shop.wait_order(order["id"], "cancelled", timeout=60)
    finally:
        await shop.aclose()
