"""Benchmark of the registry service, everything in one run on this machine.

Reads: `GET /pith/{id}.json` at 32 connections (wrk, a second process) from
  - the service (`pith serve`, PostgreSQL, N workers): its read cache answers in a pure ASGI
    middleware before FastAPI's routing,
  - the same service with that middleware off (`PITH_CACHED_READS_BEFORE_ROUTING=false`): the
    cached bytes are returned by the FastAPI route itself,
  - (a) a bare FastAPI/uvicorn route returning the same bytes from memory (the framework's ceiling),
  - (b) nginx serving the same bytes as a static file (the machine's ceiling),
all with the same worker count; rounds interleave the three so that other load on the machine
spreads over all of them, and each figure is the median over the rounds.

Writes: signed events ingested per second into PostgreSQL through `POST /api/events` (batches,
a few concurrent clients, every event verified and stored), against PyNaCl's raw Ed25519 verify
rate on one core, measured in the same run; with the CPU seconds the service's processes and
PostgreSQL's spent on it (a figure that other load on the machine does not move).

    .venv/bin/python bench/service.py [--workers 2] [--duration 8] [--rounds 3]

Needs wrk and nginx (`apt-get install -y wrk nginx`) and a PostgreSQL server
(PITH_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test; a fresh database is
created and dropped). Prints a table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
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
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.storage.engine import normalize_url  # noqa: E402
from pith_core.events import EVENT_DOMAIN, build_event, sign_event, signer_info  # noqa: E402
from pith_core.keys import KeyPair  # noqa: E402

PITH = Path(sys.executable).parent / "pith"
RECORD = "GWT7BTE6QQH6QFVV76TWP23RSF"  # seed 000 (FORGE)
SUBJECTS = [
    "pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF",
    "pith:2026:EH4GZG7XGWF4DMCCJSKTRY62GS",
    "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I",
    "pith:2025:6BBITQMBZFXIS5BUMBL2H22W5T",
    "pith:2026:5DVZVCUQFIXYUCZLARQFQU2Y34",
]
BARE_APP = """
from pathlib import Path
from fastapi import FastAPI, Response

BODY = Path({body!r}).read_bytes()
app = FastAPI()


@app.get("/pith/{{pith_id}}.json")
async def record(pith_id: str) -> Response:
    return Response(BODY, media_type="application/json")
"""
NGINX_CONF = """
{user}
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location / {{ try_files $uri =404; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout} s\n{log.read_text()}")


@contextmanager
def process(cmd: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, ended (its whole group, by id) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    admin = normalize_url(admin_url)
    name = f"pith_bench_{secrets.token_hex(4)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, *, connections: int, threads: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    pct = {p: float(v) * _UNIT_MS[u] for p, v, u in _WRK_PCT.findall(out)}
    return {"rps": float(_WRK_RPS.search(out).group(1)), "p50_ms": pct["50"], "p99_ms": pct["99"]}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none). Ratios to raw verify
    move with it: Ed25519 in C and the interpreter do not speed up alike from one CPU to the
    next (issue 14's ingest, same code: a median of 0.47 on the earlier sessions' machine,
    0.415 on an AMD EPYC)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return ""


def group_pids(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def user_pids(user: str) -> list[int]:
    out = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def raw_verify_rate(seconds: float = 2.0) -> float:
    """PyNaCl Ed25519 verifies per second on one core, of messages shaped like event digests."""
    key = SigningKey.generate()
    vk = key.verify_key
    signed = [key.sign(EVENT_DOMAIN + secrets.token_bytes(32)) for _ in range(2000)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in signed:
            vk.verify(s)
        done += len(signed)
    return done / (time.perf_counter() - start)


def make_batches(count: int, batch: int) -> list[bytes]:
    """`count` signed replication records over the seed subjects, as request bodies."""
    per_chain = 200
    events: list[dict[str, Any]] = []
    chain = 0
    while len(events) < count:
        key = KeyPair(SigningKey.generate(), f"bench-{chain}")
        subject = SUBJECTS[chain % len(SUBJECTS)]
        signer = signer_info(key, signer_id=f"bench-worker-{chain}", signer_type="worker")
        prev = None
        for seq in range(1, min(per_chain, count - len(events)) + 1):
            unsigned = build_event(
                target="replication",
                subject=subject,
                created_at="2026-11-23T05:00:00Z",
                seq=seq,
                prev=prev,
                signer=signer,
                payload={"claim_id": "bench", "verdict": "replicated", "run": str(seq)},
            )
            event = sign_event(unsigned, key)
            events.append(event)
            prev = event["event_id"]
        chain += 1
    return [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]


def ingest(base_url: str, bodies: list[bytes], clients: int) -> float:
    """Post every batch (from `clients` threads); seconds from first request to last answer."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = c.post(
                    "/api/events", content=body, headers={"Content-Type": "application/json"}
                )
                if r.status_code != 201:
                    errors.append(f"{r.status_code}: {r.text[:300]}")
                    return

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError("ingest failed: " + errors[0])
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PITH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench/service.py needs {tool}: apt-get install -y wrk nginx", file=sys.stderr)
            return 2
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    started = datetime.now(UTC)
    load_before = os.getloadavg()

    with (
        tempfile.TemporaryDirectory(prefix="pith-bench-") as tmp_name,
        fresh_postgres(args.postgres_url) as db_url,
    ):
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        ports = {
            "service": free_port(),
            "routed": free_port(),
            "bare": free_port(),
            "nginx": free_port(),
        }
        env = {
            **os.environ,
            "PITH_DATABASE_URL": db_url,
            "PITH_KEY_FILE": str(tmp / "key.json"),
            "PITH_HOST": "127.0.0.1",
            "PITH_PORT": str(ports["service"]),
            "PITH_PUBLIC_URL": f"http://127.0.0.1:{ports['service']}",  # same bytes on both
            "PITH_WORKERS": str(args.workers),
            "PITH_ACCESS_LOG": "false",
            "PITH_RATE_LIMIT_READS_PER_MINUTE": "0",
            "PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0",
        }
        service_url = f"http://127.0.0.1:{ports['service']}"
        path = f"/pith/{RECORD}.json"
        serve_cmd = [str(PITH), "serve", "--log-level", "warning"]
        with process(serve_cmd, tmp / "service.log", env=env, cwd=tmp) as svc:
            wait_ready(f"{service_url}/healthz", svc, tmp / "service.log")
            body = httpx.get(service_url + path).content
            (tmp / "www" / "pith").mkdir(parents=True)
            (tmp / "www" / "pith" / f"{RECORD}.json").write_bytes(body)
            (tmp / "record.json").write_bytes(body)
            (tmp / "bare_app.py").write_text(BARE_APP.format(body=str(tmp / "record.json")))
            (tmp / "nginx.conf").write_text(
                NGINX_CONF.format(
                    user="user root;" if os.geteuid() == 0 else "",
                    workers=args.workers,
                    root=tmp,
                    port=ports["nginx"],
                )
            )
            bare_cmd = [
                sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(tmp),
                "--host", "127.0.0.1", "--port", str(ports["bare"]),
                "--workers", str(args.workers), "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
            nginx_cmd = [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]
            routed_env = {
                **env,
                "PITH_PORT": str(ports["routed"]),
                "PITH_CACHED_READS_BEFORE_ROUTING": "false",
            }
            with (
                process(serve_cmd, tmp / "routed.log", env=routed_env, cwd=tmp) as routed,
                process(bare_cmd, tmp / "bare.log") as bare,
                process(nginx_cmd, tmp / "nginx.log") as web,
            ):
                urls = {name: f"http://127.0.0.1:{port}{path}" for name, port in ports.items()}
                wait_ready(urls["routed"], routed, tmp / "routed.log")
                wait_ready(urls["bare"], bare, tmp / "bare.log")
                wait_ready(urls["nginx"], web, tmp / "nginx.log")
                for name, url in urls.items():
                    if httpx.get(url).content != body:
                        raise RuntimeError(f"{name} does not serve the same bytes")
                    wrk(url, connections=args.connections, threads=args.threads, duration=2)
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
                for r in range(args.rounds):
                    for name, url in urls.items():
                        runs[name].append(
                            wrk(
                                url,
                                connections=args.connections,
                                threads=args.threads,
                                duration=args.duration,
                            )
                        )
                        print(f"round {r + 1} {name:8s} {runs[name][-1]}", file=sys.stderr)
            verify_rate = raw_verify_rate()
            bodies = make_batches(args.events, args.batch)
            head_before = httpx.get(f"{service_url}/healthz").json()["log_head"]
            service_pids, pg_pids = group_pids(svc.pid), user_pids("postgres")
            cpu_before = cpu_seconds(service_pids), cpu_seconds(pg_pids)
            elapsed = ingest(service_url, bodies, args.clients)
            cpu_after = cpu_seconds(service_pids), cpu_seconds(pg_pids)
            head_after = httpx.get(f"{service_url}/healthz").json()["log_head"]
            stored = head_after - head_before
            if stored != args.events:
                raise RuntimeError(f"{args.events} events posted, the log grew by {stored}")

    reads = {
        name: {k: statistics.median(run[k] for run in rs) for k in ("rps", "p50_ms", "p99_ms")}
        for name, rs in runs.items()
    }
    ingest_rate = args.events / elapsed
    service_cpu = cpu_after[0] - cpu_before[0]
    postgres_cpu = cpu_after[1] - cpu_before[1]
    per_cpu_second = args.events / (service_cpu + postgres_cpu)
    result = {
        "started_at": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "reads": reads,
        "read_runs": runs,
        "ratios": {
            "service_over_bare_fastapi": reads["service"]["rps"] / reads["bare"]["rps"],
            "routed_service_over_bare_fastapi": reads["routed"]["rps"] / reads["bare"]["rps"],
            "service_over_nginx": reads["service"]["rps"] / reads["nginx"]["rps"],
            "bare_fastapi_over_nginx": reads["bare"]["rps"] / reads["nginx"]["rps"],
        },
        "ingest": {
            "events": args.events,
            "batch": args.batch,
            "clients": args.clients,
            "seconds": elapsed,
            "events_per_second": ingest_rate,
            "raw_verify_per_second_one_core": verify_rate,
            "ratio_to_raw_verify": ingest_rate / verify_rate,
            "service_cpu_seconds": service_cpu,
            "postgres_cpu_seconds": postgres_cpu,
            "service_cpu_us_per_event": service_cpu / args.events * 1e6,
            "postgres_cpu_us_per_event": postgres_cpu / args.events * 1e6,
            "events_per_cpu_second": per_cpu_second,
            "raw_verify_us": 1e6 / verify_rate,
        },
        "targets": {
            "service_at_least_80pct_of_bare": reads["service"]["rps"] >= 0.8 * reads["bare"]["rps"],
            "service_p99_under_50ms": reads["service"]["p99_ms"] < 50,
            "ingest_at_least_50pct_of_raw_verify": ingest_rate >= 0.5 * verify_rate,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"service-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_file.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nGET {path}: {args.connections} connections, {args.workers} workers each, "
          f"median of {args.rounds} x {args.duration:g} s (wrk -t{args.threads})")  # fmt: skip
    print(
        f"{'server':34s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs (a)':>7s} {'vs (b)':>7s}"
    )
    labels = {
        "service": "service (pith serve, PostgreSQL)",
        "routed": "service, cache answered in route",
        "bare": "(a) bare FastAPI/uvicorn, memory",
        "nginx": "(b) nginx, static file",
    }
    for name, label in labels.items():
        m = reads[name]
        print(
            f"{label:34s} {m['rps']:9.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} "
            f"{m['rps'] / reads['bare']['rps']:7.2f} {m['rps'] / reads['nginx']['rps']:7.2f}"
        )
    ing = result["ingest"]
    print(
        f"\ningest: {args.events} signed events in batches of {args.batch} from {args.clients} "
        f"clients: {ing['events_per_second']:.0f} events/s into PostgreSQL; PyNaCl raw verify "
        f"{ing['raw_verify_per_second_one_core']:.0f}/s on one core; ratio "
        f"{ing['ratio_to_raw_verify']:.2f}\n"
        f"ingest CPU per event: service {ing['service_cpu_us_per_event']:.0f} us + PostgreSQL "
        f"{ing['postgres_cpu_us_per_event']:.0f} us ({per_cpu_second:.0f} events per CPU-second); "
        f"one raw Ed25519 verify {ing['raw_verify_us']:.0f} us"
    )
    print(f"targets: {result['targets']}")
    print(f"load average before/after: {load_before} / {result['machine']['load_average_after']}")
    print(f"written: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
