"""A typed Python client of a Pith registry, for agents: get, resolve, search, verify offline,
submit signed events, follow the changes feed. Retries 429/503 honouring `Retry-After`.

    from pith_client import PithClient
    with PithClient("http://127.0.0.1:8000") as pith:
        record = pith.get("2606.22932")
        report = pith.verify(record.pith_number)
        for item in pith.follow(after=0, stop_when_idle=True):
            print(item.log_index, item.event["target"])
"""

from .client import (
    FeedItem,
    PithAPIError,
    PithClient,
    Resolved,
    SearchPage,
    SubmitResult,
    VerifyReport,
)

__all__ = [
    "FeedItem",
    "PithAPIError",
    "PithClient",
    "Resolved",
    "SearchPage",
    "SubmitResult",
    "VerifyReport",
]
