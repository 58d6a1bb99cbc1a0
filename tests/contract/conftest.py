"""Contract tests: pact's usage notice stays off wherever the tests are started from."""

from __future__ import annotations

import os

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
