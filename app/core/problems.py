"""Errors as RFC 9457 `application/problem+json`: type, title, status, detail, and where it
applies the offending `field`. Services raise `Problem`; handlers here turn every error
(ours, FastAPI's validation, Starlette's 404/405, an unexpected bug) into one."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:pith:problem:"
log = logging.getLogger("pith.app")

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """A failed request: `code` names the problem type (`urn:pith:problem:<code>`)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    return Response(
        content=json.dumps(problem.body(instance), ensure_ascii=False).encode("utf-8"),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def wants_html(request: Request) -> bool:
    """A browser (HTML listed before any JSON type) gets an error page; everyone else the
    problem document."""
    from .negotiation import wants_json

    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and wants_json(accept) is None


def respond(request: Request, problem: Problem) -> Response:
    """The problem as the client asked: an HTML page for browsers, else problem+json."""
    if wants_html(request):
        from ..pages.errors import error_page

        return error_page(request, problem)
    return problem_response(problem, request.url.path)


def _busy(why: str) -> Problem:
    """A 503 the client may retry: the service is overloaded, nothing was stored."""
    return Problem(
        503, "busy", f"{why}; nothing was stored, retry shortly", headers={"Retry-After": "1"}
    )


def not_found(what: str) -> Problem:
    return Problem(404, "not_found", what)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        return respond(
            request,
            Problem(
                422,
                "validation_error",
                f"{first['field']}: {first['message']}",
                field=first["field"],
                errors=errors,
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        return respond(
            request, Problem(exc.status_code, code, detail, headers=dict(exc.headers or {}))
        )

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _pool_exhausted(request: Request, exc: SQLAlchemyTimeoutError) -> Response:
        return respond(request, _busy("every database connection is in use"))

    @app.exception_handler(OperationalError)
    async def _database_busy(request: Request, exc: OperationalError) -> Response:
        if "database is locked" not in str(exc.orig):
            return await _unexpected(request, exc)
        return respond(request, _busy("the database is busy with other writers"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(
            request, Problem(500, "internal_error", "the server failed; nothing was stored")
        )
