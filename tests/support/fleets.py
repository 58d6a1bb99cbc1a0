"""The services as real processes on a private copy of the database, for one test module."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from switchyard.stack.bootstrap import create_database, drop_database
from switchyard.stack.fleet import Fleet


def running_fleet(stack, template_database: str, instances: int = 1) -> Iterator[Fleet]:
    """Start `instances` processes of each service; stop them and drop their database after."""
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    create_database(stack.database_url, name, template=template_database)
    state = Path(tempfile.mkdtemp(prefix="switchyard-e2e-"))
    system = Fleet(state, stack, name, f"{name}.", instances=instances)
    try:
        system.start()
        yield system
    finally:
        system.stop()
        drop_database(stack.database_url, name)
        shutil.rmtree(state, ignore_errors=True)
