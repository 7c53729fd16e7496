"""`pith mirror pull` and `pith witness` judge checkpoints by the registry's key rotations
(issue 15 item 6): the old key signs checkpoints up to the tree size its rotation names, the new
key those from there; a checkpoint the old key signed past its window (a stolen key after a
retirement or a revocation) is refused with a message naming the key and its window, while one
inside the window still verifies. (In-process registry; both databases.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from app.log.client import LogClientError, OutsideKeyWindow, fetch_checkpoint, witness_once
from app.log.mirror import pull
from pith_core import note
from pith_core.keyfile import save_key
from pith_core.keys import KeyPair
from pith_core.rotation import sign_rotation

from .conftest import make_client
from .helpers import BASE_URL, PUBLIC_KEY, import_seeds, new_key, seed_number, signed_event

SUBJECT = seed_number("000")
SUFFIX = SUBJECT.rsplit(":", 1)[1]


def _proxy(client: Any, checkpoint: Callable[[], str]) -> httpx.Client:
    """`client`'s registry, but serving `checkpoint()` as its (unwitnessed) checkpoint: what a
    registry holding a stolen key could show."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/log/checkpoint", "/log/checkpoint/unwitnessed"):
            return httpx.Response(200, text=checkpoint())
        r = client.request(request.method, request.url.raw_path.decode(), content=request.content)
        return httpx.Response(
            r.status_code, content=r.content, headers={"content-type": r.headers["content-type"]}
        )

    return httpx.Client(transport=httpx.MockTransport(handle), base_url=BASE_URL)


def _re_signed(raw: str, key: SigningKey) -> str:
    """The checkpoint of `raw` signed by `key` alone."""
    cp = note.parse_checkpoint(note.parse_note(raw).text)
    return note.sign_checkpoint(cp, cp.origin, key)


@pytest.mark.parametrize("revoked", [False, True], ids=["retired", "revoked"])
def test_clients_refuse_a_checkpoint_the_old_key_signed_past_its_window(
    settings: Any, database: Any, identity: Any, tmp_path: Path, revoked: bool
) -> None:
    import_seeds(database, identity)
    with make_client(settings, database) as client:
        assert client.post(
            f"/pith/{SUFFIX}/action/replication_record", json=signed_event(new_key(), SUBJECT)
        ).status_code == 201  # fmt: skip
        old_checkpoint = client.get("/log/checkpoint").text  # the old key's, in its window
    good_size = note.parse_checkpoint(note.parse_note(old_checkpoint).text).size
    new = KeyPair(SigningKey.generate(), "pith-local-v2")
    save_key(tmp_path / "new-key.json", new)
    statement = sign_rotation(
        identity.key.signing_key, identity.key.key_id, new.public_key, new.key_id,
        takes_over_at="2026-12-01T00:00:00Z", checkpoints_through=good_size,
        revoked_since="2026-11-01T00:00:00Z" if revoked else None,
    )  # fmt: skip
    (tmp_path / "rotation.json").write_text(json.dumps(statement))
    rotated = type(settings)(  # a new Settings: model_copy would keep cached properties
        **{
            **settings.model_dump(),
            "key_file": tmp_path / "new-key.json",
            "key_rotations": [tmp_path / "rotation.json"],
        }
    )
    pinned = [identity.key.public_key, PUBLIC_KEY]  # the client pinned the old key only
    with make_client(rotated, database) as client:
        assert client.post(
            f"/pith/{SUFFIX}/action/replication_record", json=signed_event(new_key(), SUBJECT)
        ).status_code == 201  # fmt: skip
        grown = client.get("/log/checkpoint").text
        assert note.parse_checkpoint(note.parse_note(grown).text).size > good_size
        stolen = _re_signed(grown, identity.key.signing_key)
        expected = "revoked" if revoked else "retired"
        message = rf"tree size \d+ is signed by registry key {identity.key.key_id}, {expected}"

        # the mirror: refused, nothing written
        with _proxy(client, lambda: stolen) as forged, pytest.raises(OutsideKeyWindow) as e:
            pull(forged, tmp_path / "m", pinned)
        assert e.match(message) and e.match(f"tree sizes 0 to {good_size}")
        assert not (tmp_path / "m").exists()
        # the witness: refused, nothing cosigned nor remembered
        wkey = SigningKey.generate()
        with (
            _proxy(client, lambda: stolen) as forged,
            pytest.raises(OutsideKeyWindow, match=message),
        ):
            witness_once(forged, pinned, "w.example/1", wkey, tmp_path / "w.json", 1_800_000_000)
        assert not (tmp_path / "w.json").exists()

        # the old key's checkpoint inside its window still verifies; the new key's grown one
        # verifies through the rotation the registry publishes, chained from the pinned old key
        with _proxy(client, lambda: old_checkpoint) as held:
            assert fetch_checkpoint(held, pinned)[0].size == good_size  # no windows: plain
            witness_once(held, pinned, "w.example/1", wkey, tmp_path / "w.json", 1_800_000_000)
        result = pull(client, tmp_path / "m", pinned)
        assert result["tree_size"] == note.parse_checkpoint(note.parse_note(grown).text).size
        witnessed = witness_once(
            client, pinned, "w.example/1", wkey, tmp_path / "w.json", 1_800_000_001
        )
        assert witnessed["tree_size"] == result["tree_size"]
        # the same stolen checkpoint without the registry's rotations (a client given none):
        # the pinned old key alone, trusted as pinned — what the windows change
        with _proxy(client, lambda: stolen) as forged:
            assert fetch_checkpoint(forged, pinned)[0].size == result["tree_size"]


def test_rotations_that_do_not_chain_are_refused_clearly(seeded: Any, identity: Any) -> None:
    other = SigningKey.generate()
    forged = sign_rotation(
        other, "x", bytes(SigningKey.generate().verify_key), "y",
        takes_over_at="2026-12-01T00:00:00Z", checkpoints_through=1,
    )  # fmt: skip
    forged["old_public_key_hex"] = identity.key.public_key.hex()  # claims to retire ours
    with pytest.raises(LogClientError, match="do not chain from the pinned key"):
        pull(
            seeded,
            Path("/nonexistent/never-written"),
            [identity.key.public_key],
            rotations=[forged],
        )
