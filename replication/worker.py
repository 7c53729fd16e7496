"""`pith-worker`: lease a replication job, run its claim, sign the record, submit it, repeat.

    pith-worker run --server URL --key FILE [--once] [--claims forge,sage] [--json] [--keep]
    pith-worker claim NAME --profile P [--out FILE] [--keep]   # one claim, locally, no server

SIGTERM/SIGINT stop the running claim, release the lease and exit cleanly. A claim that crashes
or overruns its time limit still yields a signed record (verdict `error`, with its log digest);
the record names only what kind of failure it was (exit status, exception class), while the
real error and the last lines of the log go to stderr.

Output: stdout carries only results (`claim`: its summary as JSON; `run --json`: one JSON event
a line); progress and logs go to stderr (rich on a terminal, plain lines otherwise). A claim's
run directory (its log, its result file) is removed once done unless `--keep`; `run` keeps
every claim's log in `--logs` (default: `logs/` beside the `--state` file) as
`<log_sha256>.log`, the file the signed record's `log_sha256` names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console

from pith_core import PithError
from pith_core.keyfile import load_or_create_key
from pith_core.keys import KeyPair
from replication import environment
from replication.claims import CLAIM_MODULES, CLAIMS
from replication.client import JobAPIError, JobClient
from replication.runner import RunOutcome, run_claim
from replication.signer import ChainState, record_payload, sign_record


def package_version() -> str:
    try:
        return version("pith")
    except PackageNotFoundError:  # a checkout run with PYTHONPATH=. (the GPU machine)
        return "unknown (not installed)"


class Reporter:
    """Progress for people (rich on stderr) or for programs (`--json`: one JSON object a line,
    on stdout where the events are the command's result, else on stderr)."""

    def __init__(self, as_json: bool, *, json_to_stdout: bool = True) -> None:
        self.as_json = as_json
        self.json_out = sys.stdout if json_to_stdout else sys.stderr
        self.console = Console(stderr=True, highlight=False)
        self._status: Any = None
        self._label = ""
        self._phase = ""
        self._started = 0.0
        self._ticker: threading.Thread | None = None
        self._running = threading.Event()

    def emit(self, kind: str, **fields: Any) -> None:
        if self.as_json:
            print(
                json.dumps({"event": kind, "at": time.time(), **fields}),
                file=self.json_out,
                flush=True,
            )
        else:
            details = " ".join(f"{k}={v}" for k, v in fields.items())
            self.console.log(f"[bold]{kind}[/bold] {details}")

    def job_started(self, label: str) -> None:
        self._label, self._phase, self._started = label, "starting", time.monotonic()
        self.emit("job_started", job=label)
        if not self.as_json:
            self._status = self.console.status(self._text())
            self._status.start()
            self._running.set()
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def phase(self, name: str) -> None:
        self._phase = name
        elapsed = round(time.monotonic() - self._started, 1)
        if self.as_json:
            self.emit("phase", job=self._label, phase=name, elapsed_s=elapsed)
        else:
            self.console.log(f"phase [bold]{name}[/bold] · {elapsed:.1f} s")

    def claim_failed(self, error: str, tail: Sequence[str], **fields: Any) -> None:
        """A failed claim, for the person running the worker: its real error and the last
        lines of its log (the signed record carries neither)."""
        self.emit("claim_failed", error=error, log_tail=list(tail), **fields)
        if not self.as_json:
            lines = "\n".join(f"  | {line}" for line in tail)
            print(f"claim failed: {error}\nlast lines of its log:\n{lines}", file=sys.stderr)

    def job_finished(self) -> None:
        self._running.clear()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _text(self) -> str:
        elapsed = int(time.monotonic() - self._started)
        return f"{self._label} · phase: {self._phase} · {elapsed // 60}m{elapsed % 60:02d}s"

    def _tick(self) -> None:
        while self._running.is_set():
            if self._status is not None:
                self._status.update(self._text())
            time.sleep(0.5)


def keep_log(log_path: Path, log_sha256: str, logs_dir: Path) -> Path | None:
    """Copy a claim's log to `logs_dir/<log_sha256>.log` (the digest its record names), so it
    outlives the run directory; None when the run left no log."""
    if not log_path.is_file():
        return None
    logs_dir.mkdir(parents=True, exist_ok=True)
    kept = logs_dir / f"{log_sha256}.log"
    if not kept.exists():  # a temporary name of its own: workers may share `logs_dir`
        fd, tmp = tempfile.mkstemp(dir=logs_dir, prefix=f".{log_sha256}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, log_path.open("rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, kept)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return kept


class Heartbeat:
    """Renews a job's lease every third of its TTL on a thread while the claim runs; sets
    `cancel` when the worker is stopping or the lease is lost (`lost`). A context manager:
    leaving the block, by return or by exception, stops the beats."""

    def __init__(
        self, client: JobClient, job_id: str, lease: dict[str, Any], stop: threading.Event
    ) -> None:
        self.client, self.job_id, self.lease_id = client, job_id, lease["lease_id"]
        self.interval = max(1.0, float(lease.get("ttl_s", 60)) / 3)
        self.stop = stop
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5.0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _beat(self) -> None:
        due = time.monotonic() + self.interval
        while not self._done.wait(0.2):
            if self.stop.is_set():
                self.cancel.set()
                return
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.interval
            try:
                self.client.heartbeat(self.job_id, self.lease_id)
            except JobAPIError as e:
                if e.status in (404, 409):
                    self.lost.set()
                    self.cancel.set()
                    return
            except Exception:  # a network blip: the next beat may get through
                continue


def job_gpus(job: dict[str, Any]) -> int:
    """GPUs a leased job needs: 0 for a CPU (smoke) job; a registry older than multi-GPU jobs
    sends none: one."""
    return int(job.get("gpus", 1))


def run_environment(env: dict[str, str], job: dict[str, Any]) -> dict[str, str]:
    """The signed record's environment: the machine's, and how many GPUs the run used (0 for
    a CPU job, which still runs as one process)."""
    return {**env, "gpus_used": str(job_gpus(job))}


def advertised_gpus(flag: int | None) -> int:
    """GPUs the worker offers: `--gpus`, else PITH_WORKER_GPUS, else those nvidia-smi lists
    (at least 1: a machine without one runs the single-device jobs as it always has)."""
    if flag is None and os.environ.get("PITH_WORKER_GPUS"):
        flag = int(os.environ["PITH_WORKER_GPUS"])
    if flag is None:
        flag = max(int(environment.collect().get("gpu_count", "0") or 0), 1)
    if flag < 0:
        raise ValueError("--gpus must be >= 0")
    return flag


@dataclass
class Worker:
    client: JobClient
    key: KeyPair
    chain: ChainState
    reporter: Reporter
    claims: list[str]
    worker_id: str
    workdir: Path
    time_limit_s: float
    poll_s: float
    logs_dir: Path
    keep: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 1  # GPUs this machine gives a job (advertised when leasing)

    def flush_pending(self) -> None:
        """Resend records signed before a crash; drop those the registry already has."""
        for event in self.chain.pending:
            job_id = event["payload"].get("job_id", "")
            try:
                self.client.submit_record(job_id, event)
            except JobAPIError as e:
                if e.status != 409:
                    self.reporter.emit("resend_failed", event_id=event["event_id"], error=str(e))
                    continue
            self.chain.record_submitted(event["event_id"])
            self.reporter.emit("resent", event_id=event["event_id"])

    def run(self, once: bool) -> int:
        self.env = environment.collect()
        self.flush_pending()
        while not self.stop.is_set():
            leased = self.client.lease(self.claims, gpus=self.gpus)
            if leased is None:
                if once:
                    self.reporter.emit("no_job")
                    return 0
                self.stop.wait(self.poll_s)
                continue
            self.run_job(leased["job"], leased["lease"])
            if once:
                return 0
        return 0

    def run_job(self, job: dict[str, Any], lease: dict[str, Any]) -> None:
        job_id, lease_id = job["job_id"], lease["lease_id"]
        label = f"job {job_id} · {job['claim_id']}/{job['profile']} · {job['pith_number']}"
        # the registry should not lease it: never launch it (a job of a registry older than
        # GPU counts says none and runs as it always did, on a worker with no GPU too)
        if "gpus" in job and job_gpus(job) > self.gpus:
            self.client.release(job_id, lease_id)
            self.reporter.emit(
                "released",
                job=job_id,
                reason=f"the job needs {job_gpus(job)} GPUs; this worker offers {self.gpus}",
            )
            self.stop.wait(self.poll_s)  # it may be leased straight back: no lease-release spin
            return
        self.reporter.job_started(label)
        workdir: Path | None = None
        try:
            workdir = Path(tempfile.mkdtemp(prefix=f"job-{job_id}-", dir=self.workdir))
            with Heartbeat(self.client, job_id, lease, self.stop) as beat:
                outcome = run_claim(
                    job["claim_id"],
                    job["profile"],
                    workdir,
                    time_limit_s=self.time_limit_s,
                    gpus=max(job_gpus(job), 1),  # a CPU job runs as one process
                    on_phase=self.reporter.phase,
                    cancel=beat.cancel,
                )
            self.reporter.job_finished()  # the spinner off before the events that follow
            try:
                log = keep_log(outcome.log_path, outcome.log_sha256, self.logs_dir)
            except OSError as e:  # a full disk or unwritable --logs must not lose the record
                print(f"pith-worker: could not keep the claim's log: {e}", file=sys.stderr)
                self.reporter.emit("log_not_kept", job=job_id, error=str(e))
                log = None
            if self.stop.is_set():
                self.client.release(job_id, lease_id)
                self.reporter.emit("released", job=job_id, reason="worker stopping")
                return
            if beat.lost.is_set():
                self.reporter.emit("lease_lost", job=job_id)
                return
            if outcome.error is not None:
                self.reporter.claim_failed(
                    outcome.error, outcome.log_tail, job=job_id, log=str(log) if log else None
                )
            self.submit(job, outcome, log)
        finally:
            self.reporter.job_finished()
            if workdir is not None and self.keep:
                self.reporter.emit("kept", job=job_id, workdir=str(workdir))
            elif workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def submit(self, job: dict[str, Any], outcome: RunOutcome, log: Path | None = None) -> None:
        payload = record_payload(
            outcome, job_id=job["job_id"], environment=run_environment(self.env, job)
        )
        try:
            event = sign_record(
                self.key,
                self.chain,
                subject=job["pith_number"],
                payload=payload,
                worker_id=self.worker_id,
            )
        except PithError as e:  # the claim's result broke the signed-payload profile
            self.reporter.claim_failed(f"result not signable: {e}", (), job=job["job_id"])
            bad = dict(payload, verdict="error", error="result not signable")
            for k in ("figures", "checks", "statement", "notes"):
                bad.pop(k, None)
            event = sign_record(
                self.key,
                self.chain,
                subject=job["pith_number"],
                payload=bad,
                worker_id=self.worker_id,
            )
        response = self.client.submit_record(job["job_id"], event)
        self.chain.record_submitted(event["event_id"])
        self.reporter.emit(
            "submitted",
            job=job["job_id"],
            event_id=event["event_id"],
            verdict=event["payload"]["verdict"],
            state=response.get("job", {}).get("state"),
            log=str(log) if log else None,
        )


def cmd_run(args: argparse.Namespace) -> int:
    created = not args.key.exists()
    key = load_or_create_key(args.key, key_id=args.worker_id or f"worker-{os.uname().nodename}")
    if created:  # the registry's admin registers this public key before the worker gets jobs
        print(
            json.dumps(
                {
                    "created_key": str(args.key),
                    "key_id": key.key_id,
                    "public_key_hex": key.public_key.hex(),
                    "fingerprint": key.fingerprint,
                }
            ),
            flush=True,
        )
    claims = [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = sorted(set(claims) - set(CLAIM_MODULES))
    if unknown:
        print(
            f"pith-worker: unknown claims {unknown}; known: {sorted(CLAIM_MODULES)}",
            file=sys.stderr,
        )
        return 2
    state_path = args.state or Path(f"{args.key}.chain.json")
    logs_dir = args.logs or state_path.parent / "logs"
    args.workdir.mkdir(parents=True, exist_ok=True)
    worker = Worker(
        client=JobClient(args.server, key),
        key=key,
        chain=ChainState(state_path),
        reporter=Reporter(args.json),
        claims=claims,
        worker_id=args.worker_id or key.key_id,
        workdir=args.workdir,
        time_limit_s=args.time_limit,
        poll_s=args.poll,
        logs_dir=logs_dir,
        keep=args.keep,
        gpus=advertised_gpus(args.gpus),
    )

    def on_signal(signum: int, _frame: Any) -> None:
        worker.reporter.emit("stopping", signal=signal.Signals(signum).name)
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return worker.run(args.once)
    except JobAPIError as e:
        worker.reporter.emit("error", status=e.status, detail=str(e))
        return 1
    finally:
        worker.client.close()


def profile_gpus(claim_id: str, profile: str) -> int:
    """GPUs `claim_id`'s `profile` needs (an unknown profile: one process, so that the claim's
    own message refuses it)."""
    try:
        return CLAIMS[claim_id].gpus_for(profile)
    except ValueError:
        return 1


def cmd_claim(args: argparse.Namespace) -> int:
    reporter = Reporter(args.json, json_to_stdout=False)  # stdout holds only the summary
    workdir = Path(tempfile.mkdtemp(prefix=f"claim-{args.name}-"))
    try:
        reporter.job_started(f"claim {args.name}/{args.profile}")
        outcome = run_claim(
            args.name,
            args.profile,
            workdir,
            time_limit_s=args.time_limit,
            gpus=profile_gpus(args.name, args.profile),
            on_phase=reporter.phase,
        )
        reporter.job_finished()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "claim_id": outcome.claim_id,
        "profile": outcome.profile,
        "error": outcome.error,
        "duration_s": round(outcome.duration_s, 3),
        "log": str(outcome.log_path) if args.keep else None,
        "log_sha256": outcome.log_sha256,
        "log_tail": list(outcome.log_tail) if outcome.error else [],
        "result": outcome.result,
    }
    if outcome.error is not None:
        reporter.claim_failed(outcome.error, outcome.log_tail)
    elif args.keep:
        reporter.emit("kept", workdir=str(workdir))
    text = json.dumps(summary, indent=2, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if outcome.error is None else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="pith-worker",
        description=__doc__.split("\n\n", 1)[0],
        epilog="Exit status: 0 done, 1 a claim or the registry failed, 2 usage or a bad key.",
    )
    ap.add_argument("--version", action="version", version=f"pith-worker {package_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="lease jobs from a registry and run them")
    env = os.environ.get
    p.add_argument(
        "--server",
        default=env("PITH_SERVER_URL"),
        required=not env("PITH_SERVER_URL"),
        help="the registry's base URL (env PITH_SERVER_URL)",
    )
    p.add_argument(
        "--key",
        type=Path,
        default=env("PITH_WORKER_KEY"),
        required=not env("PITH_WORKER_KEY"),
        help="the worker's key file, created on first use (env PITH_WORKER_KEY)",
    )
    p.add_argument(
        "--claims",
        default=env("PITH_WORKER_CLAIMS") or ",".join(c for c in CLAIM_MODULES if c != "selftest"),
        help="comma-separated claim ids this worker runs (env PITH_WORKER_CLAIMS)",
    )
    p.add_argument("--once", action="store_true", help="run at most one job, then exit")
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs this worker gives a job (env PITH_WORKER_GPUS; default: those nvidia-smi "
        "lists, at least 1); a job needing more is not leased to it, one needing several "
        "runs through torchrun",
    )
    p.add_argument("--json", action="store_true", help="machine-readable progress lines")
    p.add_argument("--state", type=Path, default=None, help="seq/prev chain file (KEY.chain.json)")
    p.add_argument("--worker-id", default=None, help="the signer_id on records (the key's id)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pith-worker",
        help="where each job's run directory is made (default: TMPDIR/pith-worker)",
    )
    p.add_argument(
        "--logs",
        type=Path,
        default=env("PITH_WORKER_LOGS") or None,
        help="where every claim's log is kept as <log_sha256>.log, the digest its signed record "
        "names, even when the run directory is removed (default: logs/ beside the --state "
        "file; env PITH_WORKER_LOGS)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep each job's whole run directory too (result file; the log is kept in --logs "
        "either way)",
    )
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds a claim may run")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between empty leases")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "claim",
        help="run one claim locally, without a server; prints its summary as JSON",
    )
    p.add_argument("name", choices=sorted(CLAIM_MODULES), help="the claim to run")
    p.add_argument("--profile", default="smoke", help="the claim's profile (default: smoke)")
    p.add_argument("--out", type=Path, default=None, help="also write the summary to this file")
    p.add_argument(
        "--json", action="store_true", help="progress as JSON lines on stderr (not rich)"
    )
    p.add_argument(
        "--time-limit", type=float, default=900.0, help="seconds the claim may run (900)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the run directory (log, result) and name it"
    )
    p.set_defaults(func=cmd_claim)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (PithError, OSError) as e:
        print(f"pith-worker {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
