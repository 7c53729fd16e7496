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
