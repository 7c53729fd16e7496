"""What the OpenAPI schema says about responses that routes build as raw bytes."""

from __future__ import annotations

from typing import Any

JSON_OBJECT: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}
JSON_RESPONSE: dict[int | str, dict[str, Any]] = {200: JSON_OBJECT}
CREATED_RESPONSE: dict[int | str, dict[str, Any]] = {200: JSON_OBJECT, 201: JSON_OBJECT}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "The request was refused; the problem document says why",
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "field": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                }
            }
        },
    }
}
