"""Issue 14's figures: a registry a stranger can neither fool nor stall, measured on a live
`pith serve` (SQLite file and PostgreSQL), one run each.

For each backend:
  1. ingest: `--events` (30,000) signed events about one paper, batches of 500 from 2 clients;
     events per CPU second of the service against PyNaCl's raw Ed25519 verify rate (target ≥ 0.5);
  2. a stale state.json of that paper (one new event since it was saved): CPU seconds of the
     service for the read (target ≤ 0.5), and the first, full build for reference;
  3. actions: CPU per action on that paper against one with 10 events (target ≤ 2×);
  4. amplification: 40 concurrent `state.json?cb=<random>` reads of the big paper (made stale
     first) while /healthz is polled: /healthz p99 (target < 100 ms), 5xx count (0), the
     service's peak RSS (target < 500 MB);
  5. `--mixed-seconds` (120) of mixed reads and writes: 5xx count (target 0).

    .venv/bin/python bench/registry_load.py [--events 30000] [--mixed-seconds 120]
        [--backends sqlite,postgresql]

Needs a PostgreSQL server (PITH_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/
test) for that backend. Prints a table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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


def run_backend(backend: str, args: argparse.Namespace, raw_rate: float) -> dict[str, Any]:
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
            pids = lambda: group_pids(svc.pid)  # noqa: E731
            http = httpx.Client(base_url=base, timeout=300)

            # 1. ingest
            chains = [Chain(BIG, f"bulk-{i}") for i in range(max(1, args.events // 500))]
            batches = []
            for chain in chains:
                events = [chain.next() for _ in range(min(500, args.events))]
                batches.append(json.dumps(events).encode())
            queue = list(batches)
            lock = threading.Lock()
            failures: list[str] = []

            def poster() -> None:
                with httpx.Client(base_url=base, timeout=300) as c:
                    while True:
                        with lock:
                            if not queue:
                                return
                            body = queue.pop()
                        r = c.post(
                            "/api/events",
                            content=body,
                            headers={"Content-Type": "application/json"},
                        )
                        if r.status_code != 201:
                            failures.append(f"{r.status_code} {r.text[:200]}")

            cpu0, t0 = cpu_seconds(pids()), time.perf_counter()
            threads = [threading.Thread(target=poster) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ingest_cpu = cpu_seconds(pids()) - cpu0
            if failures:
                raise RuntimeError(f"ingest failed: {failures[0]}")
            n = sum(len(json.loads(b)) for b in batches)
            out["ingest"] = {
                "events": n,
                "seconds": round(time.perf_counter() - t0, 2),
                "service_cpu_s": round(ingest_cpu, 2),
                "events_per_cpu_s": round(n / ingest_cpu),
                "raw_verify_per_cpu_s": round(raw_rate),
                "ratio_to_raw_verify": round(n / ingest_cpu / raw_rate, 3),
                "failures": failures[:3],
            }

            # 2. state.json: first build, then stale by one event
            def cpu_of(call: Any) -> tuple[float, Any]:
                before = cpu_seconds(pids())
                result = call()
                return cpu_seconds(pids()) - before, result

            first_cpu, r = cpu_of(lambda: http.get(f"/pith/{suffix(BIG)}/state.json"))
            assert r.status_code == 200, r.text[:300]
            one = Chain(BIG, "one-more")
            http.post(f"/pith/{suffix(BIG)}/action/replication_record", json=one.next())
            stale_cpu, r = cpu_of(lambda: http.get(f"/pith/{suffix(BIG)}/state.json"))
            state = r.json()
            out["state_json"] = {
                "valid_event_count": state["valid_event_count"],
                "first_build_cpu_s": round(first_cpu, 3),
                "stale_by_one_cpu_s": round(stale_cpu, 3),
                "bytes": len(r.content),
            }

            # 3. actions: a paper with ~10 events against the big one
            def per_action(subject: str, count: int) -> float:
                chain = Chain(subject, f"act-{secrets.token_hex(3)}")
                url = f"/pith/{suffix(subject)}/action/replication_record"
                events = [chain.next() for _ in range(count)]
                before = cpu_seconds(pids())
                for event in events:
                    r = http.post(url, json=event)
                    assert r.status_code == 201, r.text[:300]
                return (cpu_seconds(pids()) - before) / count

            for _ in range(8):  # the small paper: 10 events
                http.post(
                    f"/pith/{suffix(SMALL)}/action/replication_record",
                    json=Chain(SMALL, "warm").next(),
                )
            small = per_action(SMALL, args.actions)
            big = per_action(BIG, args.actions)
            out["actions"] = {
                "count_each": args.actions,
                "cpu_ms_per_action_small_paper": round(small * 1000, 2),
                "cpu_ms_per_action_big_paper": round(big * 1000, 2),
                "ratio": round(big / small, 2) if small else None,
            }

            # 4. amplification
            http.post(
                f"/pith/{suffix(BIG)}/action/replication_record", json=one.next()
            )  # stale again
            stop = threading.Event()
            health: list[float] = []
            codes: list[int] = []
            peak = [rss_mb(pids())]

            def poll_health() -> None:
                with httpx.Client(base_url=base, timeout=60) as c:
                    while not stop.is_set():
                        t = time.perf_counter()
                        r = c.get("/healthz")
                        health.append((time.perf_counter() - t) * 1000)
                        codes.append(r.status_code)
                        peak[0] = max(peak[0], rss_mb(pids()))
                        time.sleep(0.05)

            def busting_reader() -> None:
                with httpx.Client(base_url=base, timeout=120) as c:
                    for _ in range(args.reads_each):
                        r = c.get(
                            f"/pith/{suffix(BIG)}/state.json",
                            params={"cb": secrets.token_hex(8)},
                        )
                        codes.append(r.status_code)

            poller = threading.Thread(target=poll_health)
            poller.start()
            t0 = time.perf_counter()
            readers = [threading.Thread(target=busting_reader) for _ in range(40)]
            for t in readers:
                t.start()
            for t in readers:
                t.join()
            stop.set()
            poller.join()
            out["amplification"] = {
                "reads": 40 * args.reads_each,
                "seconds": round(time.perf_counter() - t0, 2),
                "healthz_p50_ms": round(statistics.median(health), 1),
                "healthz_p99_ms": round(sorted(health)[int(0.99 * (len(health) - 1))], 1),
                "healthz_samples": len(health),
                "status_5xx": sum(1 for c in codes if c >= 500),
                "peak_rss_mb": round(peak[0], 1),
            }

            # 5. mixed load
            stop = threading.Event()
            mixed: list[int] = []

            def writer(i: int) -> None:
                chains = {s: Chain(s, f"mixed-{i}-{k}") for k, s in enumerate(SUBJECTS)}
                with httpx.Client(base_url=base, timeout=120) as c:
                    while not stop.is_set():
                        s = random.choice(SUBJECTS)
                        r = c.post(
                            f"/pith/{suffix(s)}/action/replication_record", json=chains[s].next()
                        )
                        mixed.append(r.status_code)

            def reader() -> None:
                with httpx.Client(base_url=base, timeout=120) as c:
                    while not stop.is_set():
                        s = suffix(random.choice(SUBJECTS))
                        url = random.choice(
                            [f"/pith/{s}.json", f"/pith/{s}/state.json", f"/pith/{s}", "/"]
                        )
                        mixed.append(c.get(url).status_code)

            workers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
            workers += [threading.Thread(target=reader) for _ in range(8)]
            for t in workers:
                t.start()
            time.sleep(args.mixed_seconds)
            stop.set()
            for t in workers:
                t.join()
            out["mixed"] = {
                "seconds": args.mixed_seconds,
                "requests": len(mixed),
                "status_5xx": sum(1 for c in mixed if c >= 500),
                "status_429": sum(1 for c in mixed if c == 429),
            }
            http.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--actions", type=int, default=100)
    parser.add_argument("--reads-each", type=int, default=4)
    parser.add_argument("--mixed-seconds", type=float, default=120.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PITH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)
    raw = raw_verify_per_cpu_s()
    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "runs": [run_backend(b, args, raw) for b in args.backends.split(",")],
    }
    print(json.dumps(results, indent=2))
    out = REPO / "bench" / "results" / f"registry-load-{results['when'].replace(':', '')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
