"""`pith witness serve`: a witness that logs push their checkpoints to (C2SP tlog-witness
`POST /add-checkpoint`). It cosigns a checkpoint only after checking it extends the last one it
cosigned for that log (RFC 6962 consistency), and records each cosigned size at once, the check
and the record under one lock, as the spec requires (else two requests could roll it back).

The pull-based `pith witness URL` (app.log.client.witness_once) is the other way in; both cosign
with `pith_core.note.cosign`."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pith_core import note
from pith_core.logcheck import SIZE_MEDIA_TYPE, LogCheckError, parse_add_checkpoint
from pith_core.tlog import ProofError, verify_consistency

MAX_BODY_BYTES = 64 * 1024  # 63 proof lines and a checkpoint with its signatures fit easily
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    media_type: str = TEXT


class WitnessState:
    """The latest cosigned checkpoint of each log (origin → size, root, note), in a JSON file
    written atomically and durably (temporary file fsynced, renamed, the directory fsynced)
    before an answer leaves: a witness that forgot a size it cosigned after a power loss could
    later cosign a checkpoint that does not extend it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.logs: dict[str, dict[str, object]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def latest(self, origin: str) -> tuple[int, bytes | None]:
        held = self.logs.get(origin)
        if held is None:
            return 0, None
        return int(str(held["size"])), base64.b64decode(str(held["root"]))

    def record(self, origin: str, size: int, root: bytes, checkpoint: str) -> None:
        self.logs[origin] = {
            "size": size,
            "root": base64.b64encode(root).decode(),
            "checkpoint": checkpoint,
        }
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps(self.logs, indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself is durable only once its directory is
        finally:
            os.close(directory)


@dataclass
class Witness:
    name: str
    key: SigningKey
    logs: Mapping[str, note.Verifier]  # origin → the log key its checkpoints verify under
    state: WitnessState
    clock: Callable[[], int] = lambda: int(time.time())

    def add_checkpoint(self, body: bytes) -> Answer:
        """The answer to one add-checkpoint request (status and body as the spec says)."""
        try:
            old, proof, raw = parse_add_checkpoint(body)
            parsed = note.parse_note(raw)
            checkpoint = note.parse_checkpoint(parsed.text)
        except (LogCheckError, note.NoteError) as e:
            return Answer(400, f"{e}\n")
        verifier = self.logs.get(checkpoint.origin)
        if verifier is None:
            return Answer(404, f"unknown log origin {checkpoint.origin!r}\n")
        if not any(note.signature_verifies(parsed, s, verifier) for s in parsed.signatures):
            return Answer(403, "no signature of the log's key on the checkpoint\n")
        if old > checkpoint.size:
            return Answer(400, f"old size {old} is above the checkpoint's {checkpoint.size}\n")
        with self.state.lock:  # check and record at once: no rollback by a slower request
            size, root = self.state.latest(checkpoint.origin)
            if old != size:
                return Answer(409, f"{size}\n", SIZE_MEDIA_TYPE)
            if old == checkpoint.size:
                if size > 0 and root != checkpoint.root:
                    return Answer(409, f"{size}\n", SIZE_MEDIA_TYPE)
            elif old == 0:
                if proof:
                    return Answer(422, "a consistency proof from size 0 is empty\n")
            else:
                assert root is not None
                try:
                    verify_consistency(old, checkpoint.size, proof, root, checkpoint.root)
                except ProofError as e:
                    return Answer(422, f"checkpoint {checkpoint.size} does not extend {old}: {e}\n")
            self.state.record(checkpoint.origin, checkpoint.size, checkpoint.root, raw)
        return Answer(200, note.cosign(parsed.text, self.name, self.key, self.clock()).line())


def witness_app(witness: Witness) -> Starlette:
    """The HTTP face: `POST /add-checkpoint` (the submission prefix is the server's root)."""

    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return Response("request body too large\n", 413, media_type=TEXT)
        # a lock, a few Ed25519 checks and two fsyncs: off the event loop
        answer = await run_in_threadpool(witness.add_checkpoint, body)
        return Response(answer.body, answer.status, media_type=answer.media_type)

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])
