"""The HTML error page a browser gets instead of a problem document (same status, same words)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..core.negotiation import HTML
from ..core.problems import Problem
from .templating import templates


def error_page(request: Request, problem: Problem) -> Response:
    ctx = getattr(request.app.state, "ctx", None)
    base_url = ctx.base_url if ctx is not None else ""
    html = templates.get_template("error.html").render(
        base_url=base_url, problem=problem, path=request.url.path
    )
    headers = {**problem.headers, "Vary": "Accept"}
    return Response(html, status_code=problem.status, media_type=HTML, headers=headers)
