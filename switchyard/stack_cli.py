"""`switchyard stack up|down|status|logs`: what the Makefile's targets of the same names run."""

from __future__ import annotations

import asyncio
import subprocess
import time

import typer
from rich.console import Console
from rich.table import Table

from switchyard.stack import control
from switchyard.stack.health import check
from switchyard.stack.inspect import inspect
from switchyard.stack.processes import StackError
from switchyard.stack.services import ready

stack_app = typer.Typer(help="Start, stop and inspect the infrastructure.", no_args_is_help=True)
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@stack_app.command()
def up(
    nodes: int | None = typer.Option(
        None, "--nodes", help="3: cluster mode, three nodes each of RabbitMQ and Kafka (native)"
    ),
) -> None:
    """Start Postgres, RabbitMQ and Kafka (or find them running), bootstrap, print the URLs."""
    try:
        endpoints, seconds, started = control.up(nodes)
        results = asyncio.run(check(endpoints))
    except StackError as exc:
        _fail(exc)
    unhealthy = [name for name, _, ok, _, _ in results if not ok]
    if unhealthy:
        _fail(StackError(f"not answering: {', '.join(unhealthy)}; see `make logs`"))
    state = f"started {', '.join(started)} in {seconds:.1f}s" if started else "already running"
    console.print(f"[green]{endpoints.backend} stack: {state}[/green]")
    console.print(f"  DATABASE_URL={endpoints.database_url}")
    console.print(f"  AMQP_URL={endpoints.amqp_failover_url}")
    console.print(f"  KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
    for process in control.service_processes():
        console.print(f"  {process.name:<9} {process.url}  (API docs: {process.url}/docs)")
    console.print("  URLs are also in .stack/env; the development webhook secret is in .env")


@stack_app.command("bootstrap")
def bootstrap_command(
    database_url: str = typer.Option(..., envvar="DATABASE_URL", help="a superuser URL"),
) -> None:
    """Create the database, schemas and roles, and migrate every service (safe to repeat)."""
    from switchyard.stack.bootstrap import bootstrap

    try:
        bootstrap(database_url)
    except StackError as exc:
        _fail(exc)
    console.print("bootstrapped: schemas, roles and migrations are in place")


@stack_app.command()
def down() -> None:
    """Stop exactly what `up` started, also after a crash."""
    try:
        console.print(control.down())
    except StackError as exc:
        _fail(exc)


@stack_app.command()
def status() -> None:
    """One table of server health, read from the real servers."""
    try:
        endpoints = control.current()
    except StackError as exc:
        _fail(exc)
    table = Table(title=f"switchyard ({endpoints.backend})")
    for column in ("server", "url", "health", "detail", "answered in"):
        table.add_column(column)
    results = list(asyncio.run(check(endpoints)))
    for process in control.service_processes():
        started = time.monotonic()
        ok = ready(process.url)
        detail = f"pid {process.pid()}" if process.running() else "not running"
        results.append((process.name, process.url, ok, detail, time.monotonic() - started))
    for name, url, ok, detail, seconds in results:
        health = "[green]healthy[/green]" if ok else "[red]down[/red]"
        table.add_row(name, url, health, detail, f"{seconds * 1000:.0f} ms")
    console.print(table)
    flow = Table(title="message flow")
    for column in ("kind", "name", "reading"):
        flow.add_column(column)
    for reading in asyncio.run(inspect(endpoints)):
        value = f"[red]{reading.value}[/red]" if reading.alarm else reading.value
        flow.add_row(reading.what, reading.name, value)
    console.print(flow)
    if not all(ok for _, _, ok, _, _ in results):
        raise typer.Exit(1)


@stack_app.command()
def logs(
    server: str = typer.Argument(
        "", help="postgres, rabbitmq, kafka, users, orders or payments; all when empty"
    ),
    follow: bool = typer.Option(False, "--follow", "-f"),
    lines: int = typer.Option(40, "--lines", "-n"),
) -> None:
    """Show (or follow) the servers' logs."""
    files = control.logs()
    chosen = [files[server]] if server else list(files.values())
    if server and server not in files:
        _fail(StackError(f"unknown server {server!r}: one of {', '.join(files)}"))
    existing = [str(path) for path in chosen if path.is_file()]
    if not existing:
        _fail(StackError("no logs yet: is the stack running (`make up`)?"))
    subprocess.run(["tail", f"-n{lines}", *(["-F"] if follow else []), *existing], check=False)
