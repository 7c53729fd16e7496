"""Benchmark of the transparency log's cost (issue 15), in one run on this machine.

Ingest: the same signed events posted through `POST /api/events` (batches, a few concurrent
clients) to two servers on two fresh PostgreSQL databases, one appending every event to the log
(`pith serve`) and one from `create_app(log_append=False)` (events stored without leaves: a
bench-only app factory parameter, no setting reaches it); the batches are split into rounds that
alternate between the two, so other load on the machine spreads over both. Reported: events/s
each and their ratio (target >= 0.85), and the CPU seconds per event the service and PostgreSQL
spent (a figure other load does not move).

Reads: `GET /log/checkpoint` and a full tile (`/log/tile/0/000`) from the service with the log,
against a bare FastAPI/uvicorn route returning the same bytes from memory, at 32 connections
(wrk); rounds interleave; medians. Target: service >= 0.8 of the bare route.

    .venv/bin/python bench/log.py [--workers 2] [--events 20000] [--duration 8] [--rounds 3]

Needs wrk (`apt-get install -y wrk`) and PostgreSQL (PITH_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test; fresh databases are created and dropped). Prints a
table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import (
    PITH,
    REPO,
    cpu_seconds,
    free_port,
    fresh_postgres,
    group_pids,
    ingest,
    make_batches,
    process,
    user_pids,
    wait_ready,
    wrk,
)

BARE_APP = """
from pathlib import Path
from fastapi import FastAPI, Response

CHECKPOINT = Path({checkpoint!r}).read_bytes()
TILE = Path({tile!r}).read_bytes()
app = FastAPI()


@app.get("/log/checkpoint")
async def checkpoint() -> Response:
    return Response(CHECKPOINT, media_type="text/plain; charset=utf-8")


@app.get("/log/tile/0/000")
async def tile() -> Response:
    return Response(TILE, media_type="application/octet-stream")
"""
READ_PATHS = {"checkpoint": "/log/checkpoint", "tile": "/log/tile/0/000"}
# The log-less server: the same registry, its database prepared as `pith serve` prepares it.
WITHOUT_LOG_APP = """
from app.main import create_app


def app():
    return create_app(log_append=False)
"""
PREPARE = (
    "from app.cli import load_results, seed_if_empty; from app.settings import Settings; "
    "from app.storage.migrate import upgrade_database; s = Settings(); "
    "upgrade_database(s.database_url); seed_if_empty(s); load_results(s)"
)


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
    if not shutil.which("wrk"):
        print("bench/log.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="pith-bench-log-") as tmp_name,
        fresh_postgres(args.postgres_url) as db_with,
        fresh_postgres(args.postgres_url) as db_without,
    ):
        tmp = Path(tmp_name)
        ports = {"with": free_port(), "without": free_port(), "bare": free_port()}

        def env(name: str, db_url: str, **extra: str) -> dict[str, str]:
            return {
                **os.environ,
                "PITH_DATABASE_URL": db_url,
                "PITH_KEY_FILE": str(tmp / "key.json"),
                "PITH_HOST": "127.0.0.1",
                "PITH_PORT": str(ports[name]),
                "PITH_PUBLIC_URL": f"http://127.0.0.1:{ports['with']}",
                "PITH_WORKERS": str(args.workers),
                "PITH_ACCESS_LOG": "false",
                "PITH_RATE_LIMIT_READS_PER_MINUTE": "0",
                "PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0",
                **extra,
            }

        serve = [str(PITH), "serve", "--log-level", "warning"]
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        with process(serve, tmp / "with.log", env=env("with", db_with), cwd=tmp) as svc:
            wait_ready(f"{urls['with']}/healthz", svc, tmp / "with.log")
            without_env = env("without", db_without)
            (tmp / "without_log.py").write_text(WITHOUT_LOG_APP)
            subprocess.run([sys.executable, "-c", PREPARE], env=without_env, cwd=tmp, check=True)
            without_cmd = [
                sys.executable, "-m", "uvicorn", "without_log:app", "--factory",
                "--app-dir", str(tmp), "--host", "127.0.0.1", "--port", str(ports["without"]),
                "--workers", str(args.workers), "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
            with process(without_cmd, tmp / "without.log", env=without_env, cwd=tmp) as bare_log:
                wait_ready(f"{urls['without']}/healthz", bare_log, tmp / "without.log")
                bodies = make_batches(args.events, args.batch)
                procs = {"with": svc, "without": bare_log}
                seconds = {"with": 0.0, "without": 0.0}
                cpu = {"with": 0.0, "without": 0.0}
                chunk = max(1, len(bodies) // (2 * args.rounds))
                pieces = [bodies[i : i + chunk] for i in range(0, len(bodies), chunk)]
                for n, piece in enumerate(pieces):
                    order = ("with", "without") if n % 2 == 0 else ("without", "with")
                    for name in order:
                        pids = group_pids(procs[name].pid) + user_pids("postgres")
                        before = cpu_seconds(pids)
                        seconds[name] += ingest(urls[name], piece, args.clients)
                        cpu[name] += cpu_seconds(pids) - before
            size = httpx.get(f"{urls['with']}/log").json()["tree_size"]
            if size < args.events:
                raise RuntimeError(f"{args.events} events posted, the log holds {size}")
            checkpoint = httpx.get(urls["with"] + READ_PATHS["checkpoint"]).content
            tile = httpx.get(urls["with"] + READ_PATHS["tile"]).content
            (tmp / "checkpoint").write_bytes(checkpoint)
            (tmp / "tile").write_bytes(tile)
            (tmp / "bare_app.py").write_text(
                BARE_APP.format(checkpoint=str(tmp / "checkpoint"), tile=str(tmp / "tile"))
            )
            bare_cmd = [
                sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(tmp),
                "--host", "127.0.0.1", "--port", str(ports["bare"]),
                "--workers", str(args.workers), "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
            with process(bare_cmd, tmp / "bare.log") as bare:
                wait_ready(urls["bare"] + READ_PATHS["tile"], bare, tmp / "bare.log")
                targets = {
                    f"{who}_{what}": urls[who] + path
                    for what, path in READ_PATHS.items()
                    for who in ("with", "bare")
                }
                for name, url in targets.items():
                    want = checkpoint if name.endswith("checkpoint") else tile
                    if httpx.get(url).content != want:
                        raise RuntimeError(f"{name} does not serve the same bytes")
                    wrk(url, connections=args.connections, threads=args.threads, duration=2)
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                for r in range(args.rounds):
                    for name, url in targets.items():
                        runs[name].append(
                            wrk(
                                url,
                                connections=args.connections,
                                threads=args.threads,
                                duration=args.duration,
                            )
                        )
                        print(f"round {r + 1} {name:16s} {runs[name][-1]}", file=sys.stderr)

    reads = {
        name: {k: statistics.median(run[k] for run in rs) for k in ("rps", "p50_ms", "p99_ms")}
        for name, rs in runs.items()
    }
    rates = {name: args.events / s for name, s in seconds.items()}
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
        "ingest": {
            "events_per_second_with_log": rates["with"],
            "events_per_second_without_log": rates["without"],
            "ratio_with_over_without": rates["with"] / rates["without"],
            "cpu_us_per_event_with_log": cpu["with"] / args.events * 1e6,
            "cpu_us_per_event_without_log": cpu["without"] / args.events * 1e6,
            "cpu_ratio_without_over_with": cpu["without"] / cpu["with"],
        },
        "reads": reads,
        "read_runs": runs,
        "ratios": {
            "checkpoint_over_bare": reads["with_checkpoint"]["rps"]
            / reads["bare_checkpoint"]["rps"],
            "tile_over_bare": reads["with_tile"]["rps"] / reads["bare_tile"]["rps"],
        },
    }
    result["targets"] = {
        "ingest_with_log_at_least_85pct": result["ingest"]["ratio_with_over_without"] >= 0.85,
        "checkpoint_at_least_80pct_of_bare": result["ratios"]["checkpoint_over_bare"] >= 0.8,
        "tile_at_least_80pct_of_bare": result["ratios"]["tile_over_bare"] >= 0.8,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"log-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_file.write_text(json.dumps(result, indent=2) + "\n")
    ing = result["ingest"]
    print(
        f"\ningest of {args.events} events (batches of {args.batch}, {args.clients} clients, "
        f"{args.workers} workers): with the log {ing['events_per_second_with_log']:.0f}/s, "
        f"without {ing['events_per_second_without_log']:.0f}/s, ratio "
        f"{ing['ratio_with_over_without']:.2f}; CPU per event (service + PostgreSQL) "
        f"{ing['cpu_us_per_event_with_log']:.0f} us with, "
        f"{ing['cpu_us_per_event_without_log']:.0f} us without"
    )
    for what in READ_PATHS:
        w, b = reads[f"with_{what}"], reads[f"bare_{what}"]
        print(
            f"GET {READ_PATHS[what]}: service {w['rps']:.0f} req/s (p99 {w['p99_ms']:.1f} ms), "
            f"bare {b['rps']:.0f} req/s (p99 {b['p99_ms']:.1f} ms): {w['rps'] / b['rps']:.2f}"
        )
    print(f"targets: {result['targets']}")
    print(f"load average before/after: {load_before} / {result['machine']['load_average_after']}")
    print(f"written: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
