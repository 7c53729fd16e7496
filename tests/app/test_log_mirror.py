"""`pith mirror pull` and witnesses (issue 15): a mirror of a registry that requires witness
cosignatures never publishes an unwitnessed checkpoint; once the quorum cosigned, it publishes
that checkpoint with its cosignatures. (In-process registry; both databases.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from app.log.client import LogClientError
from app.log.mirror import pull
from pith_core import note

from .helpers import PUBLIC_KEY


def test_a_mirror_publishes_only_a_witnessed_checkpoint_when_witnesses_are_required(
    settings: Any, database: Any, identity: Any, tmp_path: Path
) -> None:
    from .conftest import make_client
    from .helpers import import_seeds

    wkey, name = SigningKey.generate(), "witness.example/w1"
    vkey = note.verifier_key(name, bytes(wkey.verify_key), note.SIG_COSIGNATURE_V1)
    configured = settings.model_copy(update={"log_witnesses": [vkey], "log_witness_quorum": 1})
    import_seeds(database, identity)
    root = tmp_path / "mirror"
    keys = [identity.key.public_key, PUBLIC_KEY]  # the seeds' receipts are the public registry's
    # the registry's quorum, read from its key document: no witnessed checkpoint yet
    with make_client(configured, database) as client, pytest.raises(LogClientError):
        pull(client, root, keys)
    lax = settings.model_copy(update={"log_witnesses": [vkey], "log_witness_quorum": 0})
    # the registry publishes uncosigned checkpoints; a mirror told to want 1 refuses them
    with (
        make_client(lax, database) as client,
        pytest.raises(LogClientError, match="0 of the 1 witness cosignatures"),
    ):
        pull(client, root, keys, [note.Verifier.parse(vkey)], 1)
    assert not root.exists()  # nothing written
    with make_client(configured, database) as client:
        raw = client.get("/log/checkpoint/unwitnessed").text
        body = note.parse_note(raw).text
        cosigned = note.add_signatures(raw, [note.cosign(body, name, wkey, 1_800_000_000)])
        assert client.post("/log/cosignature", content=cosigned).status_code == 200
        result = pull(client, root, keys)
    held = note.parse_note((root / "log" / "checkpoint").read_text())
    assert [v.name for v in note.count_cosigners(held, [note.Verifier.parse(vkey)])] == [name]
    assert result["tree_size"] == note.parse_checkpoint(held.text).size > 0


def test_a_mirror_without_witnesses_required_publishes_the_latest_checkpoint(
    seeded: Any, identity: Any, tmp_path: Path
) -> None:
    result = pull(seeded, tmp_path / "m", [identity.key.public_key, PUBLIC_KEY])
    assert result["tree_size"] == seeded.get("/log").json()["tree_size"]
    bundles = sorted((tmp_path / "m" / "pith").glob("*/bundle.json"))
    assert len(bundles) == result["records"] > 0
