"""The one timestamp form signed objects use: UTC to the second, `YYYY-MM-DDTHH:MM:SSZ`.

One fixed-width form makes string order equal time order, which the merge relies on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UTC_SECOND = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def is_utc_second(value: object) -> bool:
    """True when `value` is a real instant written as `YYYY-MM-DDTHH:MM:SSZ`."""
    if not isinstance(value, str) or not _UTC_SECOND.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value[:-1])  # the regex fixed the form; this checks the calendar
    except ValueError:
        return False
    return True


def format_utc_second(moment: datetime) -> str:
    """`moment` (aware) as `YYYY-MM-DDTHH:MM:SSZ` in UTC."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant; pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_utc_micro(moment: datetime) -> str:
    """`moment` as the receipts' `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant; pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
