"""The AsyncAPI project's own parser (`@asyncapi/parser`, JavaScript), installed once and reused.

It lives in `~/.cache/switchyard/asyncapi-parser-<version>/`, outside the repository, so no
lock file or `node_modules` is ever committed; `contracts/asyncapi/validate.mjs` loads it by path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from switchyard.stack.system import _apt_install, _can_apt

PARSER_VERSION = "3.6.6"  # exact: a new release may judge the same document differently
NODE_MAJOR = 18  # the oldest Node.js the parser supports
VALIDATE = Path(__file__).parents[1] / "contracts" / "asyncapi" / "validate.mjs"
HOW_TO_GET_NODE = (
    f"Node.js {NODE_MAJOR}+ and npm are needed to validate the AsyncAPI documents with the "
    "AsyncAPI parser. Install them with: sudo apt-get install -y nodejs npm (or from nodejs.org)"
)


class ParserUnavailable(RuntimeError):
    """Node.js, npm or the parser itself could not be had."""


def node() -> str:
    """The `node` binary, installed with apt-get when we may."""
    return _tool("node", "nodejs")


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None and _can_apt():
        _apt_install(package)
        found = shutil.which(name)
    if found is None:
        raise ParserUnavailable(f"`{name}` was not found. {HOW_TO_GET_NODE}")
    return found


def _node_major(binary: str) -> int:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)", result.stdout.strip())
    return int(match.group(1)) if match else 0


def parser_dir() -> Path:
    """The folder the parser is installed in: `npm install`ed once, then reused."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchyard"
    target = cache / f"asyncapi-parser-{PARSER_VERSION}"
    if (target / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        return target
    if (major := _node_major(node())) < NODE_MAJOR:
        raise ParserUnavailable(f"node is version {major}. {HOW_TO_GET_NODE}")
    npm = _tool("npm", "npm")
    print(f"installing @asyncapi/parser {PARSER_VERSION} with npm (once) ...", flush=True)
    partial = cache / f"{target.name}.part-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # No lock file, no save, no install scripts (the parser needs none; one is only telemetry).
    options = ["--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund"]
    package = f"@asyncapi/parser@{PARSER_VERSION}"
    command = [npm, "install", "--prefix", str(partial), *options, package]
    env = os.environ | {"npm_config_update_notifier": "false", "SCARF_ANALYTICS": "false"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ParserUnavailable(
            f"npm could not install @asyncapi/parser@{PARSER_VERSION}:\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    try:
        partial.rename(target)  # whole or not at all: a cut-short install is never mistaken for one
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def validate(documents: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """Parse each document; exit code 1 and the diagnostics in stdout when any has an error."""
    command = [node(), str(VALIDATE), str(parser_dir()), *map(str, documents)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
