"""The `switchyard` command: one typer app, one sub-app per area, each added on one line."""

import typer

from switchyard.dlq import dlq_app
from switchyard.stack_cli import stack_app
from switchyard.webhook_cli import webhook_app

app = typer.Typer(
    help="Run, inspect and drive the switchyard stack.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(stack_app, name="stack")
app.add_typer(webhook_app, name="webhook")
app.add_typer(dlq_app, name="dlq")


@app.command()
def demo() -> None:
    """Walk one order through the running stack: user, order, payment webhook, paid, stats."""
    from switchyard.demo import main

    main()


if __name__ == "__main__":
    app()
