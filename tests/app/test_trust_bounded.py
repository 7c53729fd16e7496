"""The trust policy's memory stays bounded and its schemas are built once: the anchor memo is a
least-recently-used set of a fixed size, at most a few policies are kept per process, and the
`/schemas/` documents are rendered once per process, byte-identical on every answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.trust import policy as policy_module
from app.trust.payloads import PAYLOAD_MODELS
from app.trust.policy import POLICIES_KEPT, AnchorCheck, TrustPolicy, policy_for


def _bare(memo_entries: int) -> TrustPolicy:
    return TrustPolicy(
        authorities=(),
        storage_attesters=frozenset(),
        registry_fingerprints=frozenset(),
        predate_margin_seconds=0,
        memo_entries=memo_entries,
    )


def test_the_anchor_memo_is_a_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def check(self: TrustPolicy, payload: Any, canonical_sha256: str) -> AnchorCheck:
        checked.append(payload["n"])
        return AnchorCheck(False, "counted")

    monkeypatch.setattr(TrustPolicy, "_check_anchor", check)
    policy = _bare(3)

    def ask(n: str) -> None:
        policy.anchor({"event_id": f"e{n}", "payload": {"n": n}}, "h")

    for n in "0120":  # e0 asked again: a hit, now the most recently used
        ask(n)
    assert checked == ["0", "1", "2"]
    for n in "3456789":
        ask(n)
        assert len(policy._memo) <= 3
    checked.clear()
    ask("9")
    ask("8")
    assert checked == []  # the recent ones are kept
    ask("1")
    assert checked == ["1"]  # the old ones were dropped
    # least recently used, not first in: e0 outlives e1 (both in before e2; e0 used since)
    policy = _bare(3)
    checked.clear()
    for n in "0120" + "3":
        ask(n)
    ask("0")
    assert checked == ["0", "1", "2", "3"]


def test_at_most_a_few_policies_are_kept(settings: Any, identity: Any) -> None:
    for margin in range(POLICIES_KEPT + 8):
        policy_for(settings.model_copy(update={"trust_predate_margin_seconds": margin}), identity)
        assert len(policy_module._POLICIES) <= POLICIES_KEPT
    latest = settings.model_copy(update={"trust_predate_margin_seconds": POLICIES_KEPT + 7})
    assert policy_for(latest, identity).predate_margin_seconds == POLICIES_KEPT + 7


def test_schemas_are_built_once_and_answered_byte_identical(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    for target, model in PAYLOAD_MODELS.items():
        original = model.model_json_schema

        def counting(*a: Any, _t: str = target, _o: Any = original, **k: Any) -> Any:
            built.append(_t)
            return _o(*a, **k)

        monkeypatch.setattr(model, "model_json_schema", counting)
    paths = ["/schemas/", *(f"/schemas/{t}.json" for t in PAYLOAD_MODELS)]
    first = {p: client.get(p) for p in paths}
    again = {p: client.get(p) for p in paths}
    for p in paths:
        assert first[p].status_code == again[p].status_code == 200, p
        assert first[p].content == again[p].content, p
    assert first["/schemas/"].json()["schemas"].keys() == PAYLOAD_MODELS.keys()
    for target in PAYLOAD_MODELS:
        assert (
            first[f"/schemas/{target}.json"]
            .headers["content-type"]
            .startswith("application/schema+json")
        )
        # built at most once in this process, whatever was asked (earlier tests may have)
        assert built.count(target) <= 1, target
