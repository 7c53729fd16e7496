"""Property-based: every operation of the OpenAPI schema, with generated inputs (admin token
given, seeds loaded), answers without a server error and gives every error as a problem
document. Bounded (a few examples an operation) to stay within the suite's time budget."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from app.main import create_app

from .helpers import ADMIN_TOKEN, import_seeds

MAX_EXAMPLES = int(__import__("os").environ.get("PITH_SCHEMATHESIS_EXAMPLES", "25"))


@schemathesis.check
def errors_are_problems(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code >= 400:
        media = response.headers.get("content-type", [""])[0]
        assert media.startswith("application/problem+json"), (
            f"{response.status_code} answered as {media!r}, not a problem document"
        )
    return None


def test_no_operation_fails_on_generated_input(settings, database, identity) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(settings, database=database)
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                checks=[not_a_server_error, errors_are_problems],
            )

        exercise()
