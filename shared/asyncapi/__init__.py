"""A service's AsyncAPI 3.0 document, made from its `wiring()` and its payload models alone.

Served at `GET /asyncapi.json` and committed as `contracts/asyncapi/<service>.json` (`make docs`);
a unit test keeps the two equal and the AsyncAPI parser validates the files in the suite.
"""

from shared.asyncapi.document import document

__all__ = ["document"]
