"""Run one claim in a child process with a time limit, keeping its whole log and its digest.

The child is `python -m <claim module> --profile P --out result.json` in its own process group, so
a time limit or a signal stops it and everything it started. Its `::phase::` lines are reported
as they come. A crash or a timeout is an outcome, not an exception: the worker records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replication.claims import CLAIM_MODULES

PHASE_PREFIX = "::phase:: "
LOG_TAIL_LINES = 20
# torchrun's variables: a single-process claim run from inside a distributed job must not
# believe it is one of its ranks (only rank 0 writes the result)
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# the line Python's traceback ends with: a dotted exception class name, then ":" or nothing
_EXCEPTION_LINE = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:Error|Exception|Interrupt|Exit))"
    r"(?::.*)?"
)


@dataclass(frozen=True)
class RunOutcome:
    claim_id: str
    profile: str
    result: dict[str, Any] | None  # the claim's result, None when it crashed or timed out
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    log_path: Path
    log_sha256: str
    duration_s: float
    log_tail: tuple[str, ...] = ()  # the log's last lines, for people reading a failure

    @property
    def error(self) -> str | None:
        """What went wrong, with the claim's own last words when it failed (the exception or
        argparse message it printed last), so nobody has to dig the log out of a temp dir."""
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return "time limit exceeded"
        if self.exit_code != 0:
            said = self.last_words
            return f"claim exited with status {self.exit_code}" + (f": {said}" if said else "")
        if self.result is None:
            return "claim wrote no result"
        return None

    @property
    def public_error(self) -> str | None:
        """What went wrong, for the PUBLIC signed record: a fixed phrase, the exit status, and
        the exception's class name when the log ends in a traceback; never the claim's own
        text (a message or log line may hold paths, hostnames or data, and a signed record is
        forever). The person running the worker gets `error` and `log_tail` instead."""
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return "time limit exceeded"
        if self.exit_code != 0:
            kind = self.exception_type
            return f"claim exited with status {self.exit_code}" + (f" ({kind})" if kind else "")
        if self.result is None:
            return "claim wrote no result"
        return None

    @property
    def exception_type(self) -> str | None:
        """The class name of the exception the log's traceback ends with (None without one)."""
        for line in reversed(self.log_tail):
            m = _EXCEPTION_LINE.fullmatch(line.rstrip())
            if m and len(m.group(1)) <= 120:
                return m.group(1)
        return None

    @property
    def last_words(self) -> str:
        """The last line of the log that is not a phase marker (bounded)."""
        for line in reversed(self.log_tail):
            text = line.strip()
            if text and not text.startswith(PHASE_PREFIX.strip()):
                return text[:300]
        return ""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 16_384) -> tuple[str, ...]:
    """The last `lines` lines of a log file (reading at most its last `max_bytes`)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ()
    text = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line read is likely cut
    return tuple(text[-lines:])


def claim_command(
    claim_id: str, profile: str, out_file: Path, *, gpus: int = 1, python: str = sys.executable
) -> list[str]:
    """The claim's command line: `python -m <module>`, or, for a run across `gpus` > 1 GPUs of
    this machine, the same module under torchrun, one process a GPU (rank 0 writes `out_file`)."""
    if claim_id not in CLAIM_MODULES:
        raise ValueError(f"unknown claim {claim_id!r}; known: {sorted(CLAIM_MODULES)}")
    args = [CLAIM_MODULES[claim_id], "--profile", profile, "--out", str(out_file)]
    if gpus <= 1:
        return [python, "-m", *args]
    launcher = [python, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc-per-node={gpus}", "-m", *args]


def run_claim(
    claim_id: str,
    profile: str,
    workdir: Path,
    *,
    time_limit_s: float,
    on_phase: Callable[[str], None] = lambda _: None,
    cancel: threading.Event | None = None,
    python: str = sys.executable,
    gpus: int = 1,
) -> RunOutcome:
    """Run `claim_id` under `profile` in `workdir` (across `gpus` GPUs through torchrun when
    more than one); never raises for what the claim does."""
    if claim_id not in CLAIM_MODULES:
        raise ValueError(f"unknown claim {claim_id!r}; known: {sorted(CLAIM_MODULES)}")
    workdir.mkdir(parents=True, exist_ok=True)
    out_file = workdir / "result.json"
    log_path = workdir / "claim.log"
    out_file.unlink(missing_ok=True)
    cmd = claim_command(claim_id, profile, out_file, gpus=gpus, python=python)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpus <= 1:  # one process: a rank inherited from the worker's own launcher is not its own
        for name in DISTRIBUTED_ENV:
            env.pop(name, None)
    started = time.monotonic()
    digest = hashlib.sha256()
    timed_out = cancelled = False
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        def watchdog() -> None:
            nonlocal timed_out, cancelled
            while proc.poll() is None:
                if time.monotonic() - started > time_limit_s:
                    timed_out = True
                    stop()
                    return
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    stop()
                    return
                time.sleep(0.1)

        threading.Thread(target=watchdog, daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            digest.update(line)
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text.startswith(PHASE_PREFIX):
                on_phase(text[len(PHASE_PREFIX) :])
        exit_code = proc.wait()
    result = None
    if exit_code == 0 and out_file.exists():
        try:
            result = json.loads(out_file.read_text())
        except json.JSONDecodeError:
            result = None
    return RunOutcome(
        claim_id=claim_id,
        profile=profile,
        result=result,
        exit_code=None if (timed_out or cancelled) else exit_code,
        timed_out=timed_out,
        cancelled=cancelled,
        log_path=log_path,
        log_sha256=digest.hexdigest(),
        duration_s=time.monotonic() - started,
        log_tail=log_tail(log_path),
    )
