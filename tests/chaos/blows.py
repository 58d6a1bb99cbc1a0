"""The blows of the chaos run. Each strikes the running system and returns once its fault is over."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from switchyard.stack.daemon import Daemon
from switchyard.stack.endpoints import Endpoints
from switchyard.stack.fleet import Fleet
from switchyard.stack.native import NativeStack, crash_and_restart
from switchyard.stack.processes import alive
from switchyard.topology import flows, wirings
from tests.chaos.cuts import cut_off, server_ports
from tests.chaos.ledger import Ledger
from tests.chaos.redelivery import Copy, RabbitCopies, duplicates_skipped, kafka_again
from tests.support.eventually import eventually

CUT_FOR = 3.0  # seconds a service is cut off from one server


@dataclass
class Arena:
    """What the blows act on: the services' processes, the servers, and copies of messages."""

    fleet: Fleet
    endpoints: Endpoints
    copies: RabbitCopies
    ledger: Ledger

    def server_address(self, server: str) -> str:
        return {"postgres": self.endpoints.database_url, "rabbitmq": self.endpoints.amqp_url,
                "kafka": self.endpoints.kafka_bootstrap}[server]  # fmt: skip


@dataclass(frozen=True)
class ServiceKilled:
    """SIGKILL one service mid-flow (no shutdown code runs), then start it again."""

    service: str

    @property
    def name(self) -> str:
        return f"{self.service} SIGKILLed"

    async def strike(self, arena: Arena) -> str:
        arena.fleet.kill(self.service)
        await asyncio.to_thread(arena.fleet.start, self.service)
        return "restarted"


@dataclass(frozen=True)
class ServerCrashed:
    """SIGKILL one server (or one node of a cluster), then start it again on its data."""

    server: str
    node: int | None = None

    @property
    def name(self) -> str:
        node = "" if self.node is None else f" node {self.node}"
        return f"{self.server}{node} crashed"

    async def strike(self, arena: Arena) -> str:
        where = {} if self.node is None else {"node": self.node}
        await asyncio.to_thread(crash_and_restart, arena.endpoints, self.server, **where)
        return "restarted"


@dataclass(frozen=True)
class NodeDown:
    """SIGKILL one node of a broker cluster; orders must flow on the other two before it returns."""

    server: str
    node: int

    @property
    def name(self) -> str:
        return f"{self.server} node {self.node} down"

    async def strike(self, arena: Arena) -> str:
        servers = NativeStack(Path(arena.endpoints.state))
        await asyncio.to_thread(servers.crash, self.server, self.node)
        crashed = time.monotonic()
        try:
            flowing = await eventually(
                lambda: arena.ledger.flowing_since(crashed),
                timeout=120,
                message=f"orders flowing with {self.server} node {self.node} down",
            )
        finally:  # back in any case: the cluster serves the rest of the session
            await asyncio.to_thread(servers.restart, self.server, self.node)
        return f"flowed on two nodes after {flowing - crashed:.1f}s, then restarted"


@dataclass(frozen=True)
class ConnectionsCut:
    """One service's connections to one server reset for CUT_FOR seconds; the rest untouched."""

    service: str
    server: str

    @property
    def name(self) -> str:
        return f"{self.service} cut off from {self.server}"

    async def strike(self, arena: Arena) -> str:
        process = arena.fleet.processes[self.service]
        pid = process.pid()
        # None would cut this test's own process; say what the pid file and the kernel hold.
        assert pid is not None, f"{self.service} is not running: {_whereabouts(process.daemon)}"
        ports = server_ports(arena.server_address(self.server))
        reset = await asyncio.to_thread(cut_off, pid, ports, CUT_FOR)
        # A cut that met no connection proved nothing: every service holds one to every server.
        assert reset, f"{self.service} held no connection to {self.server} to cut"
        return f"{reset} connections reset"


def _whereabouts(daemon: Daemon) -> str:
    """The pid file of a program its Daemon does not find, and what runs under that pid."""
    if (record := daemon.recorded()) is None:
        return f"its pid file {daemon.pidfile.name} is missing or unreadable"
    pid, started = record
    found = alive(pid)
    now = f"started at {found.create_time()!r}" if found else "is gone"
    return (f"its pid file says {pid} started at {started}; that pid {now}; "
            f"boot time {psutil.boot_time()!r}")  # fmt: skip


@dataclass(frozen=True)
class DeliveredTwice:
    """Recent messages of every channel delivered again; each reader's inbox must skip them."""

    name: str = "messages delivered twice"

    async def strike(self, arena: Arena) -> str:
        before = await _skipped(arena.fleet)
        copies = await arena.copies.deliver_again()
        copies += await kafka_again(arena.endpoints.kafka_bootstrap, arena.fleet.prefix,
                                    flows(wirings()))  # fmt: skip
        owed = _readers_of(copies, arena.fleet.prefix)
        # Seen to arrive and be skipped, so the ledger's "applied twice" is a real test of them.
        await eventually(
            lambda: _skipped_since(arena.fleet, before, owed),
            timeout=60,
            message=f"{owed} redelivered copies skipped by the inboxes",
        )
        return f"{len(copies)} messages again, {owed} skips"


async def _skipped(fleet: Fleet) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        texts = [(await http.get(f"{p.url}/metrics")).text for p in fleet.processes.values()]
    return sum(duplicates_skipped(text) for text in texts)


async def _skipped_since(fleet: Fleet, before: float, owed: int) -> bool:
    return await _skipped(fleet) - before >= owed


def _readers_of(copies: list[Copy], prefix: str) -> int:
    """How many inbox skips the copies owe: one per reader that handles the copy's type."""
    readers = {f.channel.name: f.readers for f in flows(wirings())}
    return sum(
        1
        for copy in copies
        for reader in readers[copy.channel.removeprefix(prefix)]
        if copy.type in reader.types
    )
