"""Migrations are history: each one spells out its own DDL and stands on nothing that changes later."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from switchyard.stack.bootstrap import SERVICES

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# The live code: a migration that builds on it would change what it creates whenever that code
# changes, so a fresh database would no longer get the schema that existing ones went through.
LIVE_PACKAGES = {"shared", "switchyard", "services", *SERVICES}
MIGRATIONS = sorted(REPO.glob("services/*/migrations/versions/*.py"))


def imported_modules(tree: ast.Module) -> list[str]:
    """Every module the file imports, at any depth; a relative import shows as its dots."""
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append("." * node.level + (node.module or ""))
    return modules


def test_every_service_has_migrations():
    assert {path.parts[-4] for path in MIGRATIONS} == set(SERVICES)


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: str(p.relative_to(REPO / "services")))
def test_migration_imports_nothing_from_the_live_code(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    live = [
        module
        for module in imported_modules(tree)
        if module.startswith(".") or module.split(".")[0] in LIVE_PACKAGES
    ]
    assert live == [], f"{path.name} imports {live}: write the DDL out in the migration instead"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_history_is_one_line_from_nothing(service):
    scripts = ScriptDirectory.from_config(Config(str(REPO / "services" / service / "alembic.ini")))
    revisions = list(scripts.walk_revisions())  # head first; raises on a broken chain
    assert len(scripts.get_heads()) == 1
    assert [r.revision for r in revisions if r.down_revision is None] == [revisions[-1].revision]
    assert all(not r.is_merge_point for r in revisions)
