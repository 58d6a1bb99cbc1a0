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

from switchyard.stack.processes import StackError
from switchyard.stack.system import filled_once, require

PARSER_VERSION = "3.6.6"  # exact: a new release may judge the same document differently
NODE_MAJOR = 18  # the oldest Node.js the parser supports
VALIDATE = Path(__file__).parents[1] / "contracts" / "asyncapi" / "validate.mjs"
HOW_TO_GET_NODE = (
    f"Node.js {NODE_MAJOR}+ and npm are needed to validate the AsyncAPI documents with the "
    "AsyncAPI parser. Install them with: sudo apt-get install -y nodejs npm (or from nodejs.org)"
)
WHY = "they run the AsyncAPI parser that validates contracts/asyncapi/"


class ParserUnavailable(RuntimeError):
    """Node.js, npm or the parser itself could not be had."""


def node() -> str:
    """The `node` binary, installed with apt-get when we may."""
    return _tool("node", "nodejs")


def _tool(name: str, package: str) -> str:
    try:
        return str(require(lambda: shutil.which(name), package, f"`{name}`", otherwise=WHY))
    except StackError as exc:
        raise ParserUnavailable(f"{exc}. {HOW_TO_GET_NODE}") from None


def _node_major(binary: str) -> int:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)", result.stdout.strip())
    return int(match.group(1)) if match else 0


def parser_dir() -> Path:
    """The folder the parser is installed in: `npm install`ed once, then reused."""

    def install(folder: Path) -> None:
        if (major := _node_major(node())) < NODE_MAJOR:
            raise ParserUnavailable(f"node is version {major}. {HOW_TO_GET_NODE}")
        npm = _tool("npm", "npm")
        print(f"installing @asyncapi/parser {PARSER_VERSION} with npm (once) ...", flush=True)
        # No lock file, no save, no install scripts (the parser needs none; one is telemetry).
        options = ["--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund"]
        package = f"@asyncapi/parser@{PARSER_VERSION}"
        command = [npm, "install", "--prefix", str(folder), *options, package]
        env = os.environ | {"npm_config_update_notifier": "false", "SCARF_ANALYTICS": "false"}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise ParserUnavailable(
                f"npm could not install @asyncapi/parser@{PARSER_VERSION}:\n"
                + (result.stdout + result.stderr)[-2000:]
            )

    return filled_once(f"asyncapi-parser-{PARSER_VERSION}", install)


def validate(documents: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """Parse each document; exit code 1 and the diagnostics in stdout when any has an error."""
    command = [node(), str(VALIDATE), str(parser_dir()), *map(str, documents)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
