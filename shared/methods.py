"""Which methods a path answers, as HTTP asks: OPTIONS says so, and a 405 names them all.

The router answers 405 with the methods of the first route whose path matched, and a path served
by two routes (GET and POST on a collection) has two: `Allow` would name only one of them. The
OpenAPI document knows every method of every path, so `Allow` is read from it.
"""

from __future__ import annotations

from functools import cache

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def answer_allowed_methods(app: FastAPI) -> None:
    """OPTIONS on a documented path answers 204 with `Allow`; a method the path does not serve,
    405 with the same `Allow`. Every other HTTP error is answered as before."""

    @cache
    def documented() -> list[tuple[object, str]]:
        """Each documented path's regex and its `Allow` value."""
        return [
            (compile_path(path)[0], ", ".join(sorted({"OPTIONS"} | _methods(operations))))
            for path, operations in app.openapi()["paths"].items()
        ]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            path = request.url.path
            for regex, allow in documented():
                if regex.match(path):
                    if request.method == "OPTIONS":
                        return Response(
                            status_code=status.HTTP_204_NO_CONTENT, headers={"Allow": allow}
                        )
                    exc = HTTPException(exc.status_code, exc.detail, headers={"Allow": allow})
                    break
        return await http_exception_handler(request, exc)


def _methods(operations: dict) -> set[str]:
    return {method.upper() for method in operations if method in HTTP_METHODS}
