"""A bundle of an imported record: the receipt is the public registry's, the events ours."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pith_core import PUBLIC_REGISTRY_KEY_HEX, build_bundle, merge
from pith_core.verify import verify_document

from .conftest import RECORD_SEEDS, load_seed, new_key, record_event
from .test_cli import PITH

PUBLIC = bytes.fromhex(PUBLIC_REGISTRY_KEY_HEX)


def imported_bundle() -> tuple[dict, bytes]:
    seed = load_seed(RECORD_SEEDS[0])
    ours = new_key("local", 9)
    events = [record_event(ours, seed["canonical_record"])]
    state = merge(events, [ours.public_key])
    bundle = build_bundle(
        seed["canonical_record"],
        seed["receipt"],
        events,
        source_aliases=state["current"]["source_aliases"],
        state_sha256=state["state_sha256"],
    )
    return bundle, ours.public_key


def failed(checks: list) -> set[str]:
    return {c.name for c in checks if not c.passed}


def test_needs_both_keys() -> None:
    bundle, ours = imported_bundle()
    assert failed(verify_document(bundle, [ours, PUBLIC])[1]) == set()
    assert failed(verify_document(bundle, [PUBLIC])[1]) == {"events and merged state"}
    assert failed(verify_document(bundle, [ours])[1]) == {"receipt"}


def test_cli_takes_repeated_keys(tmp_path: Path) -> None:
    bundle, ours = imported_bundle()
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    both = ["--key", ours.hex(), "--key", PUBLIC_REGISTRY_KEY_HEX]
    out = subprocess.run([PITH, "verify", *both, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [PITH, "verify", "--key", ours.hex(), str(path)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "receipt" in out.stderr


def test_a_whole_bundle_is_not_a_page_whatever_keys_it_carries() -> None:
    """Only a bundle that names a next page, or holds fewer events than its events_total, is
    a page (state not checked); one carrying `next: null` and all its events is whole: its
    state is checked, so a wrong state hash fails (it cannot dodge the check by those keys)."""
    bundle, ours = imported_bundle()
    keys = [ours, PUBLIC]
    whole = {**bundle, "next": None, "events_total": len(bundle["events"])}
    assert failed(verify_document(whole, keys)[1]) == set()
    forged = {**whole, "state_sha256": "0" * 64}
    assert failed(verify_document(forged, keys)[1]) == {"events and merged state"}
    page = {**forged, "next": "cursor"}
    checks = verify_document(page, keys)[1]
    assert failed(checks) == set()
    assert "state not checked" in next(c.detail for c in checks if c.name.startswith("events"))
    short = {**forged, "events_total": len(bundle["events"]) + 1}
    assert failed(verify_document(short, keys)[1]) == set()


def test_pith_verify_of_an_unreachable_url_is_a_usage_error() -> None:
    """The URL reader (pith_client, found through the `pith.fetch` entry point) reports a
    refused connection as exit 2 with the URL, no traceback."""
    out = subprocess.run(
        [PITH, "verify", "http://127.0.0.1:9/pith/AAAAAAAA/bundle.json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "cannot read http://127.0.0.1:9/" in out.stderr
    assert "Traceback" not in out.stderr
