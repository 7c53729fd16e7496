"""The protocol's errors: each says what is wrong and, where it applies, where."""

from __future__ import annotations


class PithError(ValueError):
    """Base of every protocol error (a ValueError: bad input, never a bug)."""


class CanonicalError(PithError):
    """A value outside the canonical JSON profile; `path` names the offending value (`$.a[2].b`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}")


class RecordError(PithError):
    """Paper metadata or a canonical record that does not have the required shape."""


class PithNumberError(PithError):
    """A string that is not a Pith number in any accepted form."""


class SignatureError(PithError):
    """A receipt or event whose signature, key or digest does not check out."""


class EventError(PithError):
    """An event that is not valid; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
