"""Issue 14's figures: a registry a stranger can neither fool nor stall, measured on a live
`pith serve` (SQLite file and PostgreSQL), one run each.

For each backend:
  1. ingest: `--events` (30,000) signed events about one paper, batches of 500 from 2 clients,
     in `--ingest-rounds` (6) rounds; events the service accepted per CPU second of the service,
     against PyNaCl's raw Ed25519 verify rate measured between the rounds, each round's CPU
     weighed by the rate on either side of it (target ≥ 0.5). The machine's speed drifts within
     a run: five runs each, alternating, on a 2-core AMD EPYC, read 0.373-0.451 with raw
     verify measured only before and after (`--ingest-rounds 1`), 0.365-0.397 in six rounds;
  2. a stale state.json of that paper (one new event since it was saved): CPU seconds of the
     service for the read (target ≤ 0.5), and the first, full build for reference;
  3. actions: CPU per action on that paper against one with 10 events (target ≤ 2×);
  4. amplification: 40 concurrent `state.json?cb=<random>` reads of the big paper (made stale
     first) while /healthz is polled from a separate process: /healthz p99 (target < 100 ms),
     5xx count (0), the service's peak RSS (target < 500 MB);
  5. `--mixed-seconds` (120) of mixed reads and writes: 5xx count (target 0).
Each figure is recorded with the machine's load average: on a shared machine, compare ratios
measured side by side. A bench thread that fails fails the run.

    .venv/bin/python bench/registry_load.py [--events 30000] [--ingest-rounds 6]
        [--mixed-seconds 120] [--backends sqlite,postgresql]
        [--phases state_json,actions,amplification,mixed]

Needs a PostgreSQL server (PITH_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/
test) for that backend. Prints a table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service import (  # noqa: E402  (bench/service.py: shared helpers)
    PITH,
    SUBJECTS,
    cpu_model,
    cpu_seconds,
    free_port,
    fresh_postgres,
    group_pids,
    process,
    wait_ready,
)

from pith_core.events import build_event, sign_event, signer_info  # noqa: E402
from pith_core.keys import KeyPair  # noqa: E402

BIG, SMALL = SUBJECTS[0], SUBJECTS[1]


def suffix(subject: str) -> str:
    return subject.rsplit(":", 1)[1]


class Chain:
    """One signer's chain of replication records about one subject."""

    def __init__(self, subject: str, name: str) -> None:
        self.key = KeyPair(SigningKey.generate(), name)
        self.signer = signer_info(self.key, signer_id=name, signer_type="bench")
        self.subject = subject
        self.seq = 0
        self.prev: str | None = None

    def next(self) -> dict[str, Any]:
        self.seq += 1
        unsigned = build_event(
            target="replication",
            subject=self.subject,
            created_at="2026-11-23T05:00:00Z",
            seq=self.seq,
            prev=self.prev,
            signer=self.signer,
            payload={"claim_id": "bench", "verdict": "inconclusive", "run": str(self.seq)},
        )
        event = sign_event(unsigned, self.key)
        self.prev = event["event_id"]
        return event


def raw_verify_per_cpu_s(seconds: float = 2.0) -> float:
    """PyNaCl Ed25519 verifies per CPU second of this process (CPU time, like the service's
    figure: other load on the machine moves neither)."""
    key = SigningKey.generate()
    vk = key.verify_key
    signed = [key.sign(secrets.token_bytes(46)) for _ in range(500)]
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for s in signed:
            vk.verify(s)
        done += len(signed)
    return done / (time.process_time() - start)


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


@contextmanager
def database(backend: str, tmp: Path, pg_admin: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
    else:
        with fresh_postgres(pg_admin) as url:
            yield url


class Threads:
    """Threads that fail the run when one dies: each one's exception is kept, with its
    traceback, and raised by `join` once every thread of the group has ended."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except BaseException:  # kept, and raised by join
                self.errors.append(traceback.format_exc())

        thread = threading.Thread(target=run, name=getattr(fn, "__name__", "bench"))
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        if self.errors:
            raise RuntimeError(
                f"{len(self.errors)} of {len(self.threads)} bench threads died; the first:\n"
                + self.errors[0]
            )


def poll_health(base: str, stop: Any, out: Any) -> None:
    """/healthz latencies (ms) with their statuses, every 50 ms until `stop` is set, sent on
    `out` (a traceback instead when it fails). Run in a process of its own."""
    try:
        samples: list[tuple[float, int]] = []
        with httpx.Client(base_url=base, timeout=60) as c:
            c.get("/healthz")  # connected before the readers start
            out.send("ready")
            while not stop.is_set():
                t = time.perf_counter()
                r = c.get("/healthz")
                samples.append(((time.perf_counter() - t) * 1000, r.status_code))
                time.sleep(0.05)
        out.send(samples)
    except BaseException:  # reported to the bench, which fails the run
        out.send(traceback.format_exc())


def load_now() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (other work moves wall-clock figures)."""
    return [round(x, 2) for x in os.getloadavg()]


class Bench:
    """One live service and the phases measured on it."""

    def __init__(self, base: str, pids: Callable[[], list[int]], args: argparse.Namespace) -> None:
        self.base = base
        self.pids = pids
        self.args = args
        self.http = httpx.Client(base_url=base, timeout=300)
        self.extra = Chain(BIG, "one-more")

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def post_one(self, subject: str, event: dict[str, Any]) -> None:
        r = self.http.post(f"/pith/{suffix(subject)}/action/replication_record", json=event)
        if r.status_code != 201:
            raise RuntimeError(f"action refused: {r.status_code} {r.text[:300]}")

    def ingest(self) -> dict[str, Any]:
        """`--events` events about the big paper in batches of 500 from 2 clients, sent in
        `--ingest-rounds` rounds; the rate counts the events the service says it accepted per
        CPU second of the service. Raw verify is measured before the first round and after
        each: a round's service CPU is weighed by the raw rate on either side of it, so a
        machine whose speed drifts during the run moves both alike. The rounds' CPU is
        contiguous: what the service uses while the bench verifies is counted too (reported as
        `service_cpu_s_between_rounds`; 0.00-0.03 s of ~5 s in 6 or 60 rounds), so finer
        rounds hide no work done after an answer."""
        chains = [Chain(BIG, f"bulk-{i}") for i in range(max(1, self.args.events // 500))]
        batches = [
            json.dumps([c.next() for _ in range(min(500, self.args.events))]).encode()
            for c in chains
        ]
        sent = sum(len(json.loads(b)) for b in batches)
        rounds = max(1, min(self.args.ingest_rounds, len(batches)))
        lock = threading.Lock()
        accepted = [0]

        def post(queue: list[bytes]) -> None:
            with httpx.Client(base_url=self.base, timeout=300) as c:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    r = c.post(
                        "/api/events", content=body, headers={"Content-Type": "application/json"}
                    )
                    if r.status_code != 201:
                        raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
                    with lock:
                        accepted[0] += int(r.json()["accepted"])

        load = load_now()
        raw_seconds = max(0.25, 4.0 / (rounds + 1))  # 4 s of raw verify in all, as before
        raw = [raw_verify_per_cpu_s(raw_seconds)]
        cpu = seconds = verifies_worth = between = 0.0  # (service CPU counted in raw verifies)
        start = self.cpu()
        for k in range(rounds):
            queue = batches[k * len(batches) // rounds : (k + 1) * len(batches) // rounds]
            t0 = time.perf_counter()
            threads = Threads()
            for _ in range(2):
                threads.start(post, queue)
            threads.join()
            seconds += time.perf_counter() - t0
            answered = self.cpu()
            raw.append(raw_verify_per_cpu_s(raw_seconds))
            # counted to the next round's start: work the service does after its last answer
            # (freeing, collecting) lands while raw verify runs, and is this round's too
            end = self.cpu()
            between += end - answered
            used, start = end - start, end
            cpu += used
            verifies_worth += used * (raw[-2] + raw[-1]) / 2
        if accepted[0] != sent:
            raise RuntimeError(f"ingest: {sent} events sent, {accepted[0]} accepted")
        return {
            "events_sent": sent,
            "events_accepted": accepted[0],
            "rounds": rounds,
            "seconds": round(seconds, 2),
            "service_cpu_s": round(cpu, 2),
            "service_cpu_s_between_rounds": round(between, 3),
            "events_per_cpu_s": round(accepted[0] / cpu),
            "raw_verify_per_cpu_s": round(verifies_worth / cpu),  # weighed by each round's CPU
            "raw_verify_range": [round(min(raw)), round(max(raw))],
            "ratio_to_raw_verify": round(accepted[0] / verifies_worth, 3),
            "load_avg": load,
        }

    def cpu_of(self, call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
        before = self.cpu()
        r = call()
        cpu = self.cpu() - before
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")
        return cpu, r

    def state_json(self) -> dict[str, Any]:
        """The big paper's state.json: its first build, then stale by one event."""
        load = load_now()
        url = f"/pith/{suffix(BIG)}/state.json"
        first_cpu, _ = self.cpu_of(lambda: self.http.get(url))
        self.post_one(BIG, self.extra.next())
        stale_cpu, r = self.cpu_of(lambda: self.http.get(url))
        return {
            "valid_event_count": r.json()["valid_event_count"],
            "first_build_cpu_s": round(first_cpu, 3),
            "stale_by_one_cpu_s": round(stale_cpu, 3),
            "bytes": len(r.content),
            "content_encoding": r.headers.get("content-encoding"),
            "load_avg": load,
        }

    def actions(self) -> dict[str, Any]:
        """CPU per action on a paper with ~10 events against the big one."""

        def per_action(subject: str, count: int) -> float:
            chain = Chain(subject, f"act-{secrets.token_hex(3)}")
            events = [chain.next() for _ in range(count)]
            before = self.cpu()
            for event in events:
                self.post_one(subject, event)
            return (self.cpu() - before) / count

        load = load_now()
        for _ in range(8):  # the small paper: 10 events
            self.post_one(SMALL, Chain(SMALL, "warm").next())
        small = per_action(SMALL, self.args.actions)
        big = per_action(BIG, self.args.actions)
        return {
            "count_each": self.args.actions,
            "cpu_ms_per_action_small_paper": round(small * 1000, 2),
            "cpu_ms_per_action_big_paper": round(big * 1000, 2),
            "ratio": round(big / small, 2) if small else None,
            "load_avg": load,
        }

    def amplification(self) -> dict[str, Any]:
        """40 concurrent cache-busting reads of the big paper's state.json (made stale first)
        while /healthz is polled from a process of its own (in this one, the readers' threads
        would hold its clock behind this process's GIL)."""
        self.post_one(BIG, self.extra.next())  # stale again
        stop = threading.Event()
        codes: list[int] = []
        peak = [rss_mb(self.pids())]

        def watch_rss() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(self.pids()))
                time.sleep(0.1)

        def busting_reader() -> None:
            with httpx.Client(base_url=self.base, timeout=120) as c:
                for _ in range(self.args.reads_each):
                    url = f"/pith/{suffix(BIG)}/state.json"
                    with c.stream("GET", url, params={"cb": secrets.token_hex(8)}) as r:
                        for _ in r.iter_raw():  # received, not decoded (client CPU)
                            pass
                    codes.append(r.status_code)

        load = load_now()
        context = multiprocessing.get_context("spawn")
        poll_stop = context.Event()
        receive, send = context.Pipe(duplex=False)
        poller = context.Process(target=poll_health, args=(self.base, poll_stop, send))
        poller.start()
        if not receive.poll(120) or receive.recv() != "ready":
            raise RuntimeError("the /healthz poller did not start")
        watcher = Threads()
        watcher.start(watch_rss)
        t0 = time.perf_counter()
        readers = Threads()
        try:
            for _ in range(40):
                readers.start(busting_reader)
            readers.join()
        finally:
            seconds = time.perf_counter() - t0
            poll_stop.set()
            stop.set()
            watcher.join()
            samples = receive.recv() if receive.poll(120) else None
            poller.join(10)
        if not isinstance(samples, list):
            raise RuntimeError(f"the /healthz poller failed: {samples}")
        health = sorted(ms for ms, _ in samples)
        codes += [code for _, code in samples]
        return {
            "reads": 40 * self.args.reads_each,
            "seconds": round(seconds, 2),
            "healthz_p50_ms": round(statistics.median(health), 1),
            "healthz_p99_ms": round(health[int(0.99 * (len(health) - 1))], 1),
            "healthz_max_ms": round(health[-1], 1),
            "healthz_samples": len(health),
            "status_5xx": sum(1 for c in codes if c >= 500),
            "status_other_non_200": sum(1 for c in codes if c != 200 and c < 500),
            "peak_rss_mb": round(peak[0], 1),
            "load_avg": load,
        }

    def mixed(self) -> dict[str, Any]:
        """`--mixed-seconds` of reads and writes on every seed paper."""
        stop = threading.Event()
        mixed: list[int] = []

        def writer(i: int) -> None:
            chains = {s: Chain(s, f"mixed-{i}-{k}") for k, s in enumerate(SUBJECTS)}
            with httpx.Client(base_url=self.base, timeout=120) as c:
                while not stop.is_set():
                    s = random.choice(SUBJECTS)
                    r = c.post(
                        f"/pith/{suffix(s)}/action/replication_record", json=chains[s].next()
                    )
                    mixed.append(r.status_code)

        def reader() -> None:
            with httpx.Client(base_url=self.base, timeout=120) as c:
                while not stop.is_set():
                    s = suffix(random.choice(SUBJECTS))
                    url = random.choice(
                        [f"/pith/{s}.json", f"/pith/{s}/state.json", f"/pith/{s}", "/"]
                    )
                    mixed.append(c.get(url).status_code)

        load = load_now()
        workers = Threads()
        try:
            for i in range(4):
                workers.start(writer, i)
            for _ in range(8):
                workers.start(reader)
            time.sleep(self.args.mixed_seconds)
        finally:
            stop.set()
            workers.join()
        return {
            "seconds": self.args.mixed_seconds,
            "requests": len(mixed),
            "status_5xx": sum(1 for c in mixed if c >= 500),
            "status_429": sum(1 for c in mixed if c == 429),
            "load_avg": load,
        }


PHASES = ("ingest", "state_json", "actions", "amplification", "mixed")


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "events": args.events}
    with (
        tempfile.TemporaryDirectory(prefix="pith-bench14-") as tmp_name,
        database(backend, Path(tmp_name), args.postgres) as db_url,
    ):
        tmp = Path(tmp_name)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PITH_DATABASE_URL": db_url,
            "PITH_KEY_FILE": str(tmp / "key.json"),
            "PITH_HOST": "127.0.0.1",
            "PITH_PORT": str(port),
            "PITH_PUBLIC_URL": base,
            "PITH_WORKERS": "1",
            "PITH_ACCESS_LOG": "false",
            "PITH_RATE_LIMIT_READS_PER_MINUTE": "0",
            "PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0",
            "PITH_MAX_BATCH_EVENTS": "500",
            "PITH_MAX_BODY_BYTES": str(4 * 1024 * 1024),
        }
        serve = [str(PITH), "serve", "--log-level", "warning"]
        with process(serve, tmp / "service.log", env=env, cwd=tmp) as svc:
            wait_ready(f"{base}/healthz", svc, tmp / "service.log")
            if args.pid_file:  # for a profiler attached from outside
                Path(args.pid_file).write_text(" ".join(map(str, group_pids(svc.pid))))
            bench = Bench(base, lambda: group_pids(svc.pid), args)
            try:
                out["ingest"] = bench.ingest()
                for phase in args.phases.split(","):
                    if phase != "ingest":  # measured first, always: the others need its events
                        out[phase] = getattr(bench, phase)()
            finally:
                bench.http.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--ingest-rounds",
        type=int,
        default=6,
        help="rounds of batches, raw verify measured between them (1: before and after only)",
    )
    parser.add_argument("--actions", type=int, default=100)
    parser.add_argument("--reads-each", type=int, default=4)
    parser.add_argument("--mixed-seconds", type=float, default=120.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"what to measure, in order (of {','.join(PHASES)}); the ingest always runs first",
    )
    parser.add_argument("--pid-file", help="write the service's process ids here (profiling)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PITH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "runs": [run_backend(b, args) for b in args.backends.split(",")],
    }
    print(json.dumps(results, indent=2))
    out = REPO / "bench" / "results" / f"registry-load-{results['when'].replace(':', '')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
