"""The admin check as a route dependency: FastAPI runs dependencies before it validates the
body, so a stranger learns nothing about what a registry act takes (401/403 before any 422)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from .service import check_admin


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    check_admin(request.app.state.ctx.settings, authorization)
